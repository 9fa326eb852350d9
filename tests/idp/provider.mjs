// A real OpenID Connect provider (the certified `oidc-provider` package) for
// control's OIDC tests. Each test starts its own:
//
//   node tests/idp/provider.mjs CONFIG.json
//
// It listens on 127.0.0.1 (port 0 = any free port) and, once ready, prints
// one JSON line on stdout: {"issuer":"http://127.0.0.1:PORT","port":PORT}.
// It stops when stdin closes (the test process went away) or on SIGTERM.
//
// CONFIG.json:
//   port                 default 0
//   clients              [{client_id, client_secret?, redirect_uris,
//                          token_endpoint_auth_method? ("none" for public)}]
//   keys                 [{kid, pem}] RSA private keys (PKCS#8 PEM) to sign
//                        with; default: one fresh RS256 key
//   accounts             {"alice": {email, name, groups, ...}}: `sub` is the
//                        name; the login form takes any password
//   id_token_overrides   claims to force into every ID token (e.g. "aud",
//                        "iss", "nonce"), re-signed with the same key, to
//                        play a provider that answers wrongly
//   id_token_expired     true: every ID token was issued 2 h ago and
//                        expired 1 h ago
//   entra                {issuer_tenant?: {"<account>": "<tid>"}}: play
//                        Entra ID's multi-tenant endpoint. The metadata at
//                        /common/v2.0/.well-known/openid-configuration names
//                        the issuer ISSUER/{tenantid}/v2.0, and each ID
//                        token's iss becomes ISSUER/<tid>/v2.0 for the
//                        token's own `tid` claim (give accounts `tid`, `oid`
//                        and, for a groups overage, `_claim_names`), or for
//                        the tenant issuer_tenant names for the account, to
//                        play a token whose issuer and `tid` disagree
//
// Interaction is the package's development login and consent pages: POST
// `prompt=login&login=<account>&password=<any>` to /interaction/<uid>, then
// `prompt=consent`.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import * as jose from 'jose';
import Provider from 'oidc-provider';

if (!process.argv[2]) {
  console.error('usage: node provider.mjs CONFIG.json');
  process.exit(64);
}
const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

const keys = (config.keys?.length ? config.keys : [{ kid: 'test-rs256', generate: true }]).map((k) => {
  const key = k.generate
    ? generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
    : createPrivateKey(k.pem);
  return { ...key.export({ format: 'jwk' }), kid: k.kid, alg: 'RS256', use: 'sig' };
});

const accounts = config.accounts ?? { alice: { email: 'alice@example.test', name: 'Alice' } };
const extraClaims = new Set();
for (const claims of Object.values(accounts)) {
  for (const name of Object.keys(claims)) {
    if (!['sub', 'email', 'email_verified', 'name'].includes(name)) extraClaims.add(name);
  }
}

const server = createServer();
await new Promise((resolve) => server.listen(config.port ?? 0, '127.0.0.1', resolve));
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: config.clients,
  jwks: { keys },
  pkce: { required: () => true },
  responseTypes: ['code'],
  // Scope claims go into the ID token too (the code flow's default would
  // keep them for userinfo only).
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', ...extraClaims],
  },
  features: { devInteractions: { enabled: true } },
  ttl: { AuthorizationCode: 60, IdToken: 3600, AccessToken: 3600, Interaction: 600, Session: 3600, Grant: 3600 },
  cookies: { keys: ['enclave-test-cookie-key'] },
  async findAccount(ctx, sub) {
    const claims = accounts[sub];
    if (!claims) return undefined;
    return { accountId: sub, claims: async () => ({ email_verified: true, ...claims, sub }) };
  },
});

// Testing knobs: rewrite the ID token's claims and sign again with the
// provider's own key, as a misbehaving or compromised provider would.
const overrides = config.id_token_overrides ?? {};
const entra = config.entra;
if (Object.keys(overrides).length || config.id_token_expired || entra) {
  const signingKey = await jose.importJWK(keys[0], 'RS256');
  const issue = provider.IdToken.prototype.issue;
  provider.IdToken.prototype.issue = async function patched(options) {
    const jwt = await issue.call(this, options);
    if (options?.use !== 'idtoken') return jwt;
    const payload = { ...jose.decodeJwt(jwt), ...overrides };
    if (config.id_token_expired) {
      const now = Math.floor(Date.now() / 1000);
      Object.assign(payload, { iat: now - 7200, exp: now - 3600 });
    }
    const tenant = entra?.issuer_tenant?.[payload.sub] ?? payload.tid;
    if (entra && tenant) payload.iss = `${issuer}/${tenant}/v2.0`;
    return new jose.CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
      .setProtectedHeader(jose.decodeProtectedHeader(jwt))
      .sign(signingKey);
  };
}

const serve = provider.callback();
server.on('request', async (req, res) => {
  if (entra && req.url === '/common/v2.0/.well-known/openid-configuration') {
    const own = await fetch(`${issuer}/.well-known/openid-configuration`);
    const metadata = { ...(await own.json()), issuer: `${issuer}/{tenantid}/v2.0` };
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(metadata));
    return;
  }
  serve(req, res);
});
process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();
