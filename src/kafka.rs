//! What the Kafka source and destination share: how to reach the brokers
//! (`brokers`, `tls`, `sasl`), the escape hatch for any other librdkafka
//! setting (`librdkafka_options`, refused where it would override a setting
//! sluice derives itself), and librdkafka's log lines, sent to `tracing`.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use serde::Deserialize;

/// `tls:` — TLS to the brokers (librdkafka's OpenSSL).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaTls {
    /// CA certificates (PEM) to verify the brokers with. Default: the system's.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Client certificate (PEM), for brokers that authenticate clients.
    #[serde(default)]
    pub cert_file: Option<String>,
    /// The client certificate's private key (PEM).
    #[serde(default)]
    pub key_file: Option<String>,
    #[serde(default)]
    pub key_password: Option<String>,
    /// Check the broker's name against its certificate. Default true.
    #[serde(default)]
    pub verify_hostname: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SaslMechanism {
    #[serde(rename = "plain", alias = "PLAIN")]
    Plain,
    #[serde(rename = "scram-sha-256", alias = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "scram-sha-512", alias = "SCRAM-SHA-512")]
    ScramSha512,
}

/// `sasl:` — username and password authentication (use `${ENV}` for them).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sasl {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

/// A `librdkafka_options` value: YAML scalars as librdkafka's strings.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum OptionValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl OptionValue {
    fn text(&self) -> String {
        match self {
            OptionValue::Bool(b) => b.to_string(),
            OptionValue::Int(i) => i.to_string(),
            OptionValue::Float(f) => f.to_string(),
            OptionValue::Text(s) => s.clone(),
        }
    }
}

/// Settings sluice sets from its own keys, for every Kafka client: setting
/// them through `librdkafka_options` would make the config say one thing
/// and the client do another.
const OWNED: &[(&str, &str)] = &[
    ("bootstrap.servers", "brokers"),
    ("metadata.broker.list", "brokers"),
    ("security.protocol", "tls / sasl"),
    ("sasl.mechanism", "sasl.mechanism"),
    ("sasl.mechanisms", "sasl.mechanism"),
    ("sasl.username", "sasl.username"),
    ("sasl.password", "sasl.password"),
    ("ssl.ca.location", "tls.ca_file"),
    ("ssl.certificate.location", "tls.cert_file"),
    ("ssl.key.location", "tls.key_file"),
    ("ssl.key.password", "tls.key_password"),
    ("enable.ssl.certificate.verification", "tls.verify_hostname"),
    (
        "ssl.endpoint.identification.algorithm",
        "tls.verify_hostname",
    ),
];

/// How to reach the brokers, as one source or destination config has it.
pub struct Connection<'a> {
    pub brokers: &'a [String],
    pub tls: Option<&'a KafkaTls>,
    pub sasl: Option<&'a Sasl>,
    pub options: &'a BTreeMap<String, OptionValue>,
}

impl Connection<'_> {
    /// Check what can be checked before connecting: brokers named, files
    /// readable, no `librdkafka_options` key that sluice owns (`owned`: this
    /// client's own settings, with the key that sets each).
    pub fn validate(&self, owned: &[(&str, &str)]) -> Result<(), String> {
        if self.brokers.is_empty() {
            return Err("brokers: at least one `host:port` is needed".into());
        }
        for b in self.brokers {
            crate::destinations::tcp::split_address(b).map_err(|e| format!("brokers: {e}"))?;
        }
        for key in self.options.keys() {
            if let Some((_, ours)) = OWNED.iter().chain(owned).find(|(k, _)| k == key) {
                return Err(format!(
                    "librdkafka_options: `{key}` is set by sluice from `{ours}`; use that instead"
                ));
            }
        }
        if let Some(t) = self.tls {
            for (key, path) in [
                ("tls.ca_file", &t.ca_file),
                ("tls.cert_file", &t.cert_file),
                ("tls.key_file", &t.key_file),
            ] {
                if let Some(p) = path {
                    std::fs::metadata(p).map_err(|e| format!("{key}: `{p}`: {e}"))?;
                }
            }
            if t.cert_file.is_some() != t.key_file.is_some() {
                return Err("tls: cert_file and key_file go together".into());
            }
        }
        Ok(())
    }

    /// The librdkafka settings for these: brokers, security, the user's
    /// options, and logging through `tracing`.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers.join(","));
        let protocol = match (self.tls.is_some(), self.sasl.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        c.set("security.protocol", protocol);
        if let Some(t) = self.tls {
            for (key, v) in [
                ("ssl.ca.location", &t.ca_file),
                ("ssl.certificate.location", &t.cert_file),
                ("ssl.key.location", &t.key_file),
                ("ssl.key.password", &t.key_password),
            ] {
                if let Some(v) = v {
                    c.set(key, v);
                }
            }
            if t.verify_hostname == Some(false) {
                c.set("ssl.endpoint.identification.algorithm", "none");
            }
        }
        if let Some(s) = self.sasl {
            let m = match s.mechanism {
                SaslMechanism::Plain => "PLAIN",
                SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
                SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            };
            c.set("sasl.mechanism", m);
            c.set("sasl.username", &s.username);
            c.set("sasl.password", &s.password);
        }
        for (k, v) in self.options {
            c.set(k, v.text());
        }
        c.set_log_level(RDKafkaLogLevel::Info);
        c
    }
}

/// A librdkafka error as a cause for `crate::repeats`: its code
/// (`AllBrokersDown`), not its text, whose detail changes each time
/// ("1/1 brokers are down").
pub fn cause(e: &rdkafka::error::KafkaError) -> String {
    match e.rdkafka_error_code() {
        Some(code) => format!("{code:?}"),
        None => e.to_string(),
    }
}

/// librdkafka's own log lines, at their level, for a client's context.
pub fn log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    use RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => {
            tracing::error!(target: "librdkafka", facility, "{message}")
        }
        L::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
        L::Notice | L::Info => tracing::info!(target: "librdkafka", facility, "{message}"),
        L::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owned_option_is_refused_with_the_key_to_use() {
        let brokers = vec!["127.0.0.1:9092".to_string()];
        let check = |key: &str, owned: &[(&str, &str)]| {
            let options = BTreeMap::from([(key.to_string(), OptionValue::Int(5))]);
            Connection {
                brokers: &brokers,
                tls: None,
                sasl: None,
                options: &options,
            }
            .validate(owned)
        };
        let e = check("bootstrap.servers", &[]).unwrap_err();
        assert!(
            e.contains("`bootstrap.servers` is set by sluice from `brokers`"),
            "{e}"
        );
        assert!(check("linger.ms", &[]).is_ok());
        let e = check("linger.ms", &[("linger.ms", "linger")]).unwrap_err();
        assert!(e.contains("from `linger`"), "{e}");
    }
}
