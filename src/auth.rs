//! HTTP authentication settings (`auth: {bearer: TOKEN}` or
//! `auth: {basic: {username, password}}`), shared by the HTTP source (which
//! checks them) and HTTP-speaking destinations (which send them). Secrets
//! usually come from `${ENV}` and are never printed.

use std::fmt;

use base64::Engine;
use serde::Deserialize;

#[derive(Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub bearer: Option<String>,
    #[serde(default)]
    pub basic: Option<BasicAuth>,
}

#[derive(Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match (&self.bearer, &self.basic) {
            (Some(_), _) => "bearer",
            (_, Some(_)) => "basic",
            _ => "none",
        };
        write!(f, "AuthConfig({kind}, <redacted>)")
    }
}

impl AuthConfig {
    pub fn validate(&self) -> Result<(), String> {
        match (&self.bearer, &self.basic) {
            (Some(_), Some(_)) => Err("auth: set either `bearer` or `basic`, not both".into()),
            (None, None) => {
                Err("auth: set `bearer: TOKEN` or `basic: {username, password}`".into())
            }
            (Some(t), None) if t.is_empty() => Err("auth.bearer must not be empty".into()),
            (None, Some(b)) if b.username.contains(':') => {
                Err("auth.basic.username must not contain `:`".into())
            }
            _ => Ok(()),
        }
    }

    /// The `Authorization` header value these credentials produce.
    pub fn header_value(&self) -> String {
        match (&self.bearer, &self.basic) {
            (Some(t), _) => format!("Bearer {t}"),
            (_, Some(b)) => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", b.username, b.password))
            ),
            _ => String::new(),
        }
    }

    /// The `WWW-Authenticate` challenge for a 401.
    pub fn challenge(&self) -> &'static str {
        if self.bearer.is_some() {
            "Bearer realm=\"sluice\""
        } else {
            "Basic realm=\"sluice\""
        }
    }
}

/// Checks `Authorization` headers against expected credentials in constant
/// time. Both sides are compared as SHA-256 digests: the work depends only
/// on the length of what the client sent, never on how much of it matched
/// nor on the length of the secret.
#[derive(Clone)]
pub struct Authenticator {
    expected: [u8; 32],
}

impl Authenticator {
    pub fn new(auth: &AuthConfig) -> Self {
        Authenticator {
            expected: digest(auth.header_value().as_bytes()),
        }
    }

    /// Expecting exactly `value` (`Splunk <token>`, say).
    pub fn header(value: &str) -> Self {
        Authenticator {
            expected: digest(value.as_bytes()),
        }
    }

    pub fn check(&self, header: Option<&[u8]>) -> bool {
        let Some(got) = header else { return false };
        digest(got)
            .iter()
            .zip(&self.expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_headers() {
        let basic = AuthConfig {
            bearer: None,
            basic: Some(BasicAuth {
                username: "alice".into(),
                password: "s3cret".into(),
            }),
        };
        let a = Authenticator::new(&basic);
        assert!(a.check(Some(b"Basic YWxpY2U6czNjcmV0")));
        assert!(!a.check(Some(b"Basic YWxpY2U6czNjcmVU")));
        assert!(!a.check(None));
        assert_eq!(format!("{basic:?}"), "AuthConfig(basic, <redacted>)");
        let bearer = AuthConfig {
            bearer: Some("tok".into()),
            basic: None,
        };
        assert!(Authenticator::new(&bearer).check(Some(b"Bearer tok")));
        assert!(bearer.validate().is_ok());
        let both = AuthConfig {
            bearer: Some("t".into()),
            basic: basic.basic.clone(),
        };
        assert!(both.validate().is_err());
    }
}
