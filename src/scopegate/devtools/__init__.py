"""Development tools: keys, tokens, a token issuer, a demo API and `scopegate demo`.

Imported by the command line and the tests only; nothing on the request path uses them.
"""
