// A certified OpenID Connect provider (panva/oidc-provider) on 127.0.0.1, for scopegate's tests.
// It issues RFC 9068 JWT access tokens through the client credentials grant with resource
// indicators (RFC 8707), the way an API's machine clients get them from Auth0 or Okta.
//
//   node provider.mjs PORT RESOURCE     prints one JSON line {"issuer": ...} once listening
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
const resource = process.argv[3];
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'scopegate-tests',
    client_secret: 'loopback-only-test-secret',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
  }],
  jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'peer-key', use: 'sig', alg: 'RS256' }] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator) => ({
        scope: 'read:contacts create:contacts delete:contacts',
        audience: indicator,
        accessTokenTTL: 300,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
});

provider.listen(port, '127.0.0.1', () => {
  console.log(JSON.stringify({ issuer }));
});
process.on('SIGTERM', () => process.exit(0));
