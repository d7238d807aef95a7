//! A Keycloak-shaped token issuer on loopback: an RSA key, a discovery document and a JWKS
//! served by a local HTTP server, and tokens with Keycloak's claims.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Map, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Realm name used by the test issuer.
pub const REALM: &str = "test";
/// Path of the JWKS, as Keycloak serves it.
pub const JWKS_PATH: &str = "/realms/test/protocol/openid-connect/certs";

/// An RSA signing key with its public JWK.
pub struct RsaKey {
    /// Key id.
    pub kid: String,
    /// Private key for signing.
    pub encoding: EncodingKey,
    /// Public key as a JWK (RS256, use=sig).
    pub jwk: Value,
    /// Public key as DER (SubjectPublicKeyInfo), for the "public key as HMAC secret" attack.
    pub public_der: Vec<u8>,
}

impl RsaKey {
    /// Generates a fresh 2048-bit key.
    pub fn generate(kid: &str) -> RsaKey {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("rsa keygen");
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).expect("pkcs8");
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(pkcs8.as_ref())
        );
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("encoding key");
        let public = pair.public_key();
        let jwk = json!({
            "kid": kid,
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        });
        let public_der = AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(public)
            .expect("public der")
            .as_ref()
            .to_vec();
        RsaKey {
            kid: kid.to_owned(),
            encoding,
            jwk,
            public_der,
        }
    }
}

/// The issuer: a mock Keycloak realm.
pub struct TestIssuer {
    /// The loopback HTTP server.
    pub server: MockServer,
    /// The key published in the JWKS.
    pub key: RsaKey,
}

impl TestIssuer {
    /// Generates a key and serves discovery + JWKS on loopback.
    pub async fn start() -> TestIssuer {
        let server = MockServer::start().await;
        let key = RsaKey::generate("test-key-1");
        let issuer = TestIssuer { server, key };
        let discovery = json!({
            "issuer": issuer.issuer(),
            "jwks_uri": format!("{}{JWKS_PATH}", issuer.server.uri()),
        });
        Mock::given(method("GET"))
            .and(path("/realms/test/.well-known/openid-configuration"))
            .respond_with(ResponseTemplate::new(200).set_body_json(discovery))
            .mount(&issuer.server)
            .await;
        issuer.publish(vec![issuer.key.jwk.clone()]).await;
        issuer
    }

    /// Replaces the published JWKS with `keys` (plus an RSA-OAEP encryption key, as Keycloak
    /// publishes one, which must be ignored).
    pub async fn publish(&self, keys: Vec<Value>) {
        self.server.reset().await;
        let discovery = json!({
            "issuer": self.issuer(),
            "jwks_uri": format!("{}{JWKS_PATH}", self.server.uri()),
        });
        Mock::given(method("GET"))
            .and(path("/realms/test/.well-known/openid-configuration"))
            .respond_with(ResponseTemplate::new(200).set_body_json(discovery))
            .mount(&self.server)
            .await;
        let mut all = keys;
        let mut encryption = self.key.jwk.clone();
        encryption["kid"] = json!("enc-key");
        encryption["alg"] = json!("RSA-OAEP");
        encryption["use"] = json!("enc");
        all.push(encryption);
        Mock::given(method("GET"))
            .and(path(JWKS_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "keys": all })))
            .mount(&self.server)
            .await;
    }

    /// How many times the JWKS was fetched.
    pub async fn jwks_fetches(&self) -> usize {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == JWKS_PATH)
            .count()
    }

    /// The `iss` of this realm.
    pub fn issuer(&self) -> String {
        format!("{}/realms/{REALM}", self.server.uri())
    }

    /// Keycloak-shaped claims for `sub`, valid for five minutes.
    pub fn claims(&self, sub: &str) -> Map<String, Value> {
        let now = jsonwebtoken::get_current_timestamp();
        let value = json!({
            "exp": now + 300,
            "iat": now,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iss": self.issuer(),
            "aud": ["gantry", "account"],
            "sub": sub,
            "typ": "Bearer",
            "azp": "gantry-web",
            "preferred_username": sub,
            "email": format!("{sub}@example.com"),
            "realm_access": {"roles": ["offline_access", "default-roles-test"]},
        });
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    /// Signs `claims` with the published key (RS256).
    pub fn sign(&self, claims: &Map<String, Value>) -> String {
        self.sign_with(&self.key, Algorithm::RS256, claims)
    }

    /// Signs `claims` with `key` and `alg`, naming `key.kid`.
    pub fn sign_with(&self, key: &RsaKey, alg: Algorithm, claims: &Map<String, Value>) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(key.kid.clone());
        encode(&header, claims, &key.encoding).expect("sign")
    }

    /// A valid token for `sub`.
    pub fn token(&self, sub: &str) -> String {
        self.sign(&self.claims(sub))
    }

    /// A valid token for `sub` with realm role `gantry-admin`.
    pub fn admin_token(&self, sub: &str) -> String {
        let mut claims = self.claims(sub);
        claims.insert(
            "realm_access".into(),
            json!({"roles": ["gantry-admin", "default-roles-test"]}),
        );
        self.sign(&claims)
    }
}
