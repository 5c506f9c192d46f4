// A certified OpenID Connect provider (panva/oidc-provider) on 127.0.0.1, for scopegate's tests.
// It issues access tokens the way Auth0, Okta or Keycloak do, through real grants:
//
//   - RFC 9068 JWT access tokens (RS256, kid "peer-key") for RESOURCE and for any other resource
//     indicator (RFC 8707), opaque ones for OPAQUE_RESOURCE (default https://opaque.example.com);
//   - client credentials for machine clients, authorization code with PKCE for `scopegate-web`,
//     logging in the fixed account `alice` with the acr, amr and auth time the request asks for
//     (RFC 9470 step-up);
//   - DPoP-bound tokens (RFC 9449) when the token request carries a proof, no nonce required;
//   - token introspection (RFC 7662) and revocation (RFC 7009) for the gateway's clients.
//
//   node provider.mjs PORT RESOURCE [OPAQUE_RESOURCE]
//
// prints one JSON line {"issuer": ...} on stdout once listening, and nothing else there.
//
// Login without a human: the authorization request goes to /interaction/{uid}, which this file
// answers itself (oidc-provider leaves interactions to the application). The login prompt is
// completed at once for `alice` with
//   acr        the first of the request's `acr_values` (which needs the `openid` scope), else "pwd"
//   amr        ["pwd", "otp"] when acr is "mfa", else ["pwd"]
//   auth_time  the request's extra parameter `login_time` (epoch seconds), else now;
// the consent prompt is completed by a Grant of every scope the request names, for its resource.
import { generateKeyPairSync } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

const port = Number(process.argv[2]);
const resource = process.argv[3];
const opaqueResource = process.argv[4] || 'https://opaque.example.com';
// Opaque tokens that expire 2 s after they are issued: how a gateway meets an expired one.
const shortLivedResource = 'https://short-lived.example.com';
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });

const SCOPE = 'read:contacts create:contacts delete:contacts';
const ACCOUNT = 'alice';
// The resource servers' own clients: they introspect (and may revoke) tokens of any client.
const GATEWAYS = new Set(['scopegate', 'scopegate-post']);
const GATEWAY_SECRET = 'loopback-only-introspection-secret';
const TOKEN_TTL = 300;

const accessTokenTTL = (ctx, token) => token.resourceServer?.accessTokenTTL ?? TOKEN_TTL;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'scopegate-tests',
      client_secret: 'loopback-only-test-secret',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
    },
    {
      client_id: 'scopegate',
      client_secret: GATEWAY_SECRET,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: [],
      redirect_uris: [],
      response_types: [],
    },
    {
      client_id: 'scopegate-post',
      client_secret: GATEWAY_SECRET,
      token_endpoint_auth_method: 'client_secret_post',
      grant_types: [],
      redirect_uris: [],
      response_types: [],
    },
    {
      // A public browser client: PKCE is its protection, DPoP its sender constraint.
      client_id: 'scopegate-web',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/cb'],
    },
  ],
  jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'peer-key', use: 'sig', alg: 'RS256' }] },
  acrValues: ['pwd', 'mfa'], // advertised in discovery; any other value is granted as asked
  extraParams: {
    // The login time the interaction below records, so that a test can make an old login.
    login_time(ctx, value) {
      if (value !== undefined && !/^[0-9]{1,12}$/.test(value)) {
        throw new errors.InvalidRequest('login_time must be epoch seconds');
      }
    },
  },
  async findAccount(ctx, sub) {
    if (sub !== ACCOUNT) return undefined;
    return { accountId: sub, async claims() { return { sub }; } };
  },
  // acr, amr and auth_time belong to the authentication, which oidc-provider records on the
  // authorization code (and refresh token) but does not copy into access tokens. This hook adds
  // them to the token's `extra` claims, which go into the JWT access token's payload and into
  // the introspection answer of an opaque one alike.
  extraTokenClaims(ctx, token) {
    const source = ctx.oidc.entities.AuthorizationCode ?? ctx.oidc.entities.RefreshToken;
    if (token.kind !== 'AccessToken' || !source) return undefined;
    const claims = {};
    if (source.acr !== undefined) claims.acr = source.acr;
    if (source.amr !== undefined) claims.amr = source.amr;
    if (source.authTime !== undefined) claims.auth_time = source.authTime;
    return claims;
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  // oidc-provider's defaults for these print a notice on stdout when first called.
  ttl: {
    AccessToken: accessTokenTTL,
    ClientCredentials: accessTokenTTL,
    AuthorizationCode: 60,
    Grant: 600,
    IdToken: 600,
    Interaction: 600,
    RefreshToken: 600,
    Session: 600,
  },
  clientBasedCORS: () => false,
  async renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // oidc-provider's default lets every confidential client introspect every token (and a
      // public one its own): here the gateway's clients see any token, other clients their own.
      allowedPolicy: (ctx, client, token) => GATEWAYS.has(client.clientId) || token.clientId === client.clientId,
    },
    revocation: {
      enabled: true,
      allowedPolicy: (ctx, client, token) => GATEWAYS.has(client.clientId) || token.clientId === client.clientId,
    },
    dPoP: {
      enabled: true,
      // No nonceSecret: the provider neither asks for nor accepts a DPoP nonce; a proof needs a
      // fresh iat (within 300 s) and an unused jti instead.
      requireNonce: () => false,
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator) => ({
        scope: SCOPE,
        audience: indicator,
        accessTokenTTL: indicator === shortLivedResource ? 2 : TOKEN_TTL,
        ...(indicator === opaqueResource || indicator === shortLivedResource
          ? { accessTokenFormat: 'opaque' }
          : { accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } }),
      }),
    },
  },
  enabledJWA: {
    // Every asymmetric algorithm scopegate verifies (oidc-provider's default is ES256 and EdDSA).
    dPoPSigningAlgValues: [
      'ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA',
    ],
  },
});

// The login and consent prompts, completed without a human (see the top of this file).
provider.use(async (ctx, next) => {
  if (ctx.method !== 'GET' || !/^\/interaction\/[^/]+$/.test(ctx.path)) {
    await next();
    return;
  }
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params } = details;
  let result;
  if (prompt.name === 'login') {
    const acr = String(params.acr_values ?? '').split(' ').find(Boolean) ?? 'pwd';
    const ts = params.login_time === undefined ? Math.floor(Date.now() / 1000) : Number(params.login_time);
    result = {
      login: { accountId: ACCOUNT, acr, amr: acr === 'mfa' ? ['pwd', 'otp'] : ['pwd'], ts, remember: false },
    };
  } else if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  } else {
    result = { error: 'access_denied', error_description: `unexpected prompt ${prompt.name}` };
  }
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
  ctx.status = 303;
  ctx.redirect(returnTo);
});

provider.listen(port, '127.0.0.1', () => {
  console.log(JSON.stringify({ issuer }));
});
process.on('SIGTERM', () => process.exit(0));
