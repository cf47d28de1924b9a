//! The commands that talk to a running sluice over its API (`tap`, `top`),
//! `test`, which runs a config's tests without one, and `graph`.

pub mod graph;
pub mod tap;
pub mod test;
pub mod top;

/// The API client both use: `--api` (host:port or a URL) and `--token`.
pub struct ApiClient {
    pub base: String,
    pub token: Option<String>,
    pub http: reqwest::Client,
}

impl ApiClient {
    pub fn new(api: &str, token: Option<String>) -> anyhow::Result<ApiClient> {
        let base = if api.starts_with("http://") || api.starts_with("https://") {
            api.trim_end_matches('/').to_string()
        } else {
            format!("http://{api}")
        };
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()?;
        Ok(ApiClient { base, token, http })
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.get(format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }
}
