//! Entra ID rules for ID tokens, with tokens signed here against a local
//! JWKS: templated multi-tenant issuers, per-key issuers, `oid` as the
//! identity, groups overage, and the generic checks (signature, algorithm,
//! audience, expiry, nonce).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use control::oidc::{
    EntraClaims, EntraIdToken, GroupsOverage, IdTokenValidator, OidcConfig, OidcError,
};
use openidconnect::core::{
    CoreGenderClaim, CoreJsonWebKeySet, CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey,
};
use openidconnect::{IdTokenClaims, JsonWebKeyId, PrivateSigningKey as _};
use serde_json::{Value, json};

const TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const OTHER_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
const CLIENT: &str = "6731de76-14a6-49ae-97bc-6eba6914391e";
const OID: &str = "00000000-0000-0000-66f3-3332eca7ea81";
const NONCE: &str = "nonce-123";
const KID: &str = "entra-test-key";

fn key(pem: &str) -> CoreRsaPrivateSigningKey {
    CoreRsaPrivateSigningKey::from_pem(pem, Some(JsonWebKeyId::new(KID.into()))).unwrap()
}
fn our_key() -> CoreRsaPrivateSigningKey {
    key(include_str!("fixtures/oidc_test_rsa.pem"))
}

/// The JWKS document for `key`, its entry optionally naming an issuer (as
/// Entra's keys do).
fn jwks(key: &CoreRsaPrivateSigningKey, issuer: Option<&str>) -> Vec<u8> {
    let mut doc =
        serde_json::to_value(CoreJsonWebKeySet::new(vec![key.as_verification_key()])).unwrap();
    if let Some(iss) = issuer {
        doc["keys"][0]["issuer"] = json!(iss);
    }
    serde_json::to_vec(&doc).unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// v2 ID token claims for a user of `tid`.
fn claims(tid: &str) -> Value {
    json!({
        "iss": format!("https://login.microsoftonline.com/{tid}/v2.0"),
        "aud": CLIENT,
        "iat": now(),
        "nbf": now(),
        "exp": now() + 3600,
        "nonce": NONCE,
        "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
        "tid": tid,
        "oid": OID,
        "email": "ada@contoso.example",
        "preferred_username": "ada@contoso.example",
        "name": "Ada Lovelace",
        "groups": ["a1b2c3d4-0000-0000-0000-000000000001", "a1b2c3d4-0000-0000-0000-000000000002"],
    })
}

fn sign_with(key: &CoreRsaPrivateSigningKey, claims: Value) -> String {
    let claims: IdTokenClaims<EntraClaims, CoreGenderClaim> =
        serde_json::from_value(claims).unwrap();
    EntraIdToken::new(
        claims,
        key,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        None,
        None,
    )
    .unwrap()
    .to_string()
}

fn sign(claims: Value) -> String {
    sign_with(&our_key(), claims)
}

fn config(issuer: &str) -> OidcConfig {
    OidcConfig::new(
        issuer,
        CLIENT,
        None,
        "https://enclave.example/oidc/callback",
    )
}

fn validator(config: OidcConfig) -> IdTokenValidator {
    IdTokenValidator::new(config, &jwks(&our_key(), None)).unwrap()
}

fn multi_tenant() -> IdTokenValidator {
    validator(config(TEMPLATE))
}

#[test]
fn templated_issuer_takes_the_tokens_tenant() {
    let id = multi_tenant()
        .validate(&sign(claims(TENANT)), NONCE)
        .unwrap();
    assert_eq!(
        id.issuer,
        format!("https://login.microsoftonline.com/{TENANT}/v2.0")
    );
    assert_eq!(id.tenant.as_deref(), Some(TENANT));
    assert_eq!(id.subject, OID, "oid, not the pairwise sub");
    assert_eq!(id.email.as_deref(), Some("ada@contoso.example"));
    assert_eq!(id.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(id.groups.len(), 2);
    // Another tenant is another issuer, and still accepted by a template.
    let other = multi_tenant()
        .validate(&sign(claims(OTHER_TENANT)), NONCE)
        .unwrap();
    assert_eq!(other.tenant.as_deref(), Some(OTHER_TENANT));
}

#[test]
fn identity_is_tenant_and_oid_never_email() {
    let v = multi_tenant();
    let a = v.validate(&sign(claims(TENANT)), NONCE).unwrap();
    let mut renamed = claims(TENANT);
    renamed["email"] = json!("ada.byron@contoso.example");
    renamed["preferred_username"] = json!("ada.byron@contoso.example");
    let b = v.validate(&sign(renamed), NONCE).unwrap();
    assert_eq!(
        a.account_key(),
        b.account_key(),
        "a changed email is the same user"
    );
    assert_eq!(a.account_key(), format!("tid:{TENANT}:{OID}"));

    // The same oid in another tenant is another user.
    let c = v.validate(&sign(claims(OTHER_TENANT)), NONCE).unwrap();
    assert_ne!(a.account_key(), c.account_key());

    // Someone else with the first user's email is someone else.
    let mut impostor = claims(TENANT);
    impostor["oid"] = json!("00000000-0000-0000-0000-00000000beef");
    let d = v.validate(&sign(impostor), NONCE).unwrap();
    assert_eq!(d.email, a.email);
    assert_ne!(d.account_key(), a.account_key());
}

#[test]
fn without_oid_the_subject_is_sub() {
    let mut c = claims(TENANT);
    c.as_object_mut().unwrap().remove("oid");
    let id = multi_tenant().validate(&sign(c), NONCE).unwrap();
    assert_eq!(id.subject, "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ");
    // A non-Entra provider: the issuer scopes the subject.
    let mut plain = claims(TENANT);
    plain.as_object_mut().unwrap().remove("oid");
    plain.as_object_mut().unwrap().remove("tid");
    plain["iss"] = json!("https://idp.example");
    let id = validator(config("https://idp.example"))
        .validate(&sign(plain), NONCE)
        .unwrap();
    assert_eq!(
        id.account_key(),
        "iss:https://idp.example:AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ"
    );
}

#[test]
fn templated_issuer_refuses_a_mismatched_or_missing_tenant() {
    let v = multi_tenant();
    // iss names one tenant, tid another.
    let mut c = claims(TENANT);
    c["tid"] = json!(OTHER_TENANT);
    assert!(matches!(
        v.validate(&sign(c), NONCE),
        Err(OidcError::WrongIssuer(_))
    ));
    // tid not a GUID (and substituted into a look-alike issuer).
    let mut c = claims(TENANT);
    c["tid"] = json!("evil.example");
    c["iss"] = json!("https://login.microsoftonline.com/evil.example/v2.0");
    assert!(matches!(
        v.validate(&sign(c), NONCE),
        Err(OidcError::WrongIssuer(_))
    ));
    // No tid at all.
    let mut c = claims(TENANT);
    c.as_object_mut().unwrap().remove("tid");
    assert!(matches!(
        v.validate(&sign(c), NONCE),
        Err(OidcError::WrongIssuer(_))
    ));
    // The template itself as the issuer.
    let mut c = claims(TENANT);
    c["iss"] = json!(TEMPLATE);
    assert!(matches!(
        v.validate(&sign(c), NONCE),
        Err(OidcError::WrongIssuer(_))
    ));
    // Another host with the right tenant.
    let mut c = claims(TENANT);
    c["iss"] = json!(format!("https://login.example.net/{TENANT}/v2.0"));
    assert!(matches!(
        v.validate(&sign(c), NONCE),
        Err(OidcError::WrongIssuer(_))
    ));
}

#[test]
fn allowed_tenants_limit_a_templated_issuer() {
    let mut cfg = config(TEMPLATE);
    cfg.allowed_tenants = vec![TENANT.into()];
    let v = validator(cfg);
    assert!(v.validate(&sign(claims(TENANT)), NONCE).is_ok());
    assert!(
        matches!(v.validate(&sign(claims(OTHER_TENANT)), NONCE), Err(OidcError::TenantNotAllowed(t)) if t == OTHER_TENANT)
    );
}

#[test]
fn a_key_pinned_to_one_issuer_signs_for_no_other() {
    // Entra's JWKS: templated keys serve every tenant, a key with a GUID
    // issuer only that tenant.
    let templated =
        IdTokenValidator::new(config(TEMPLATE), &jwks(&our_key(), Some(TEMPLATE))).unwrap();
    assert!(templated.validate(&sign(claims(TENANT)), NONCE).is_ok());

    let pinned_issuer = format!("https://login.microsoftonline.com/{OTHER_TENANT}/v2.0");
    let pinned =
        IdTokenValidator::new(config(TEMPLATE), &jwks(&our_key(), Some(&pinned_issuer))).unwrap();
    assert!(pinned.validate(&sign(claims(OTHER_TENANT)), NONCE).is_ok());
    assert!(matches!(
        pinned.validate(&sign(claims(TENANT)), NONCE),
        Err(OidcError::WrongIssuer(_))
    ));
}

#[test]
fn groups_overage_fails_closed_by_default() {
    let mut c = claims(TENANT);
    c.as_object_mut().unwrap().remove("groups");
    c["_claim_names"] = json!({"groups": "src1"});
    c["_claim_sources"] = json!({"src1": {"endpoint": format!("https://graph.windows.net/{TENANT}/users/{OID}/getMemberObjects")}});
    let token = sign(c);
    assert!(matches!(
        multi_tenant().validate(&token, NONCE),
        Err(OidcError::GroupsOverage)
    ));

    // Configured to carry on: no groups, not "whatever was left".
    let mut cfg = config(TEMPLATE);
    cfg.groups_overage = GroupsOverage::NoGroups;
    let id = validator(cfg.clone()).validate(&token, NONCE).unwrap();
    assert!(id.groups.is_empty());

    // The implicit-flow marker counts too, even next to a (partial) list.
    let mut c = claims(TENANT);
    c["hasgroups"] = json!(true);
    let token = sign(c);
    assert!(matches!(
        multi_tenant().validate(&token, NONCE),
        Err(OidcError::GroupsOverage)
    ));
    assert!(
        validator(cfg)
            .validate(&token, NONCE)
            .unwrap()
            .groups
            .is_empty()
    );

    // A token that simply has no groups claim: no groups, no overage.
    let mut c = claims(TENANT);
    c.as_object_mut().unwrap().remove("groups");
    assert!(
        multi_tenant()
            .validate(&sign(c), NONCE)
            .unwrap()
            .groups
            .is_empty()
    );
}

#[test]
fn signature_and_algorithm_are_checked() {
    // Same kid, another key.
    let forged = sign_with(
        &key(include_str!("fixtures/oidc_other_rsa.pem")),
        claims(TENANT),
    );
    assert!(matches!(
        multi_tenant().validate(&forged, NONCE),
        Err(OidcError::BadSignature(_))
    ));

    // alg "none": the claims as they are, no signature.
    use base64::Engine as _;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": KID})),
        b64(&claims(TENANT))
    );
    assert!(multi_tenant().validate(&unsigned, NONCE).is_err());

    // HS256 "signed" with the public key's modulus as the secret.
    let hs = format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(&json!({"alg": "HS256", "kid": KID})),
        b64(&claims(TENANT))
    );
    assert!(multi_tenant().validate(&hs, NONCE).is_err());

    // A flipped byte in the payload.
    let token = sign(claims(TENANT));
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&parts[1])
            .unwrap(),
    )
    .unwrap();
    payload["oid"] = json!("00000000-0000-0000-0000-00000000beef");
    parts[1] = b64(&payload);
    assert!(matches!(
        multi_tenant().validate(&parts.join("."), NONCE),
        Err(OidcError::BadSignature(_))
    ));

    assert!(matches!(
        multi_tenant().validate("not.a.jwt", NONCE),
        Err(OidcError::InvalidToken(_))
    ));
}

#[test]
fn audience_expiry_and_nonce_are_checked() {
    let v = multi_tenant();
    let mut c = claims(TENANT);
    c["aud"] = json!("api://someone-else");
    assert!(matches!(
        v.validate(&sign(c), NONCE),
        Err(OidcError::WrongAudience(_))
    ));
    // Our client among untrusted others is not enough either.
    let mut c = claims(TENANT);
    c["aud"] = json!([CLIENT, "api://someone-else"]);
    assert!(v.validate(&sign(c), NONCE).is_err());

    let mut c = claims(TENANT);
    c["iat"] = json!(now() - 7200);
    c["exp"] = json!(now() - 3600);
    assert!(matches!(
        v.validate(&sign(c), NONCE),
        Err(OidcError::Expired(_))
    ));
    // Within the clock skew (120 s by default) still fine.
    let mut c = claims(TENANT);
    c["exp"] = json!(now() - 60);
    assert!(v.validate(&sign(c), NONCE).is_ok());
    // Issued in the future (beyond the skew): refused.
    let mut c = claims(TENANT);
    c["iat"] = json!(now() + 3600);
    c["exp"] = json!(now() + 7200);
    assert!(v.validate(&sign(c), NONCE).is_err());
    // The validator's clock decides.
    let later = multi_tenant().with_clock(|| SystemTime::now() + Duration::from_secs(2 * 3600));
    assert!(matches!(
        later.validate(&sign(claims(TENANT)), NONCE),
        Err(OidcError::Expired(_))
    ));

    assert!(matches!(
        v.validate(&sign(claims(TENANT)), "another-nonce"),
        Err(OidcError::NonceMismatch(_))
    ));
    let mut c = claims(TENANT);
    c.as_object_mut().unwrap().remove("nonce");
    assert!(matches!(
        v.validate(&sign(c), NONCE),
        Err(OidcError::NonceMismatch(_))
    ));
}

#[test]
fn a_single_tenant_issuer_is_compared_exactly() {
    let issuer = format!("https://login.microsoftonline.com/{TENANT}/v2.0");
    let v = validator(config(&issuer));
    assert!(v.validate(&sign(claims(TENANT)), NONCE).is_ok());
    assert!(matches!(
        v.validate(&sign(claims(OTHER_TENANT)), NONCE),
        Err(OidcError::WrongIssuer(_))
    ));
    // v1 issuer for the same tenant: another issuer.
    let mut c = claims(TENANT);
    c["iss"] = json!(format!("https://sts.windows.net/{TENANT}/"));
    assert!(matches!(
        v.validate(&sign(c), NONCE),
        Err(OidcError::WrongIssuer(_))
    ));
}
