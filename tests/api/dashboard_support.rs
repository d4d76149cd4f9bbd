//! A small browser for the dashboard tests: keeps cookies, reads CSRF tokens from pages, sends
//! forms with this server's `Origin`, and seeds accounts that can sign in.

use std::collections::BTreeMap;
use std::sync::Mutex;

use gatehouse::domain::TenantId;
use gatehouse::service::{Actor, accounts};

use crate::helpers::{TestApp, TestDb, seed};

pub const PASSWORD: &str = "correct horse battery staple";

/// A tenant admin of `tenant` with `PASSWORD`; returns the email.
pub fn admin(db: &TestDb, tenant: &TenantId) -> String {
    let email = format!("admin{}@example.com", gatehouse::domain::random_base62(8).to_lowercase());
    let hash = gatehouse::auth::password::hash(PASSWORD).unwrap();
    accounts::create_admin(&mut db.conn(), &seed::pepper(), tenant, &email, Some(&hash), &Actor::cli()).unwrap();
    email
}

/// An operator with `PASSWORD`; returns the email.
pub fn operator(db: &TestDb) -> String {
    let email = format!("op{}@example.com", gatehouse::domain::random_base62(8).to_lowercase());
    let hash = gatehouse::auth::password::hash(PASSWORD).unwrap();
    let id = gatehouse::domain::OperatorId::generate();
    gatehouse::db::operators::insert(
        &mut db.conn(),
        &gatehouse::db::operators::NewOperator { id: id.as_str(), email: &email, password_hash: &hash },
    )
    .unwrap();
    email
}

/// An answer: status, headers and the body read as text.
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    /// The first CSRF token on the page.
    pub fn csrf(&self) -> String {
        let re = regex::Regex::new(r#"name="csrf_token" value="([^"]+)""#).unwrap();
        re.captures(&self.body).unwrap_or_else(|| panic!("no csrf_token on the page: {}", self.body))[1].to_owned()
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
    }
}

pub struct Browser<'a> {
    pub app: &'a TestApp,
    cookies: Mutex<BTreeMap<String, String>>,
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Browser<'a> {
        Browser { app, cookies: Mutex::default() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.lock().unwrap().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn absorb(&self, headers: &reqwest::header::HeaderMap) {
        let mut jar = self.cookies.lock().unwrap();
        for v in headers.get_all("set-cookie") {
            let first = v.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = first.split_once('=').unwrap();
            let expired = v.to_str().unwrap().to_ascii_lowercase().contains("max-age=0");
            if value.is_empty() || expired {
                jar.remove(name);
            } else {
                jar.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).cloned()
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        self.cookies.lock().unwrap().insert(name.to_owned(), value.to_owned());
    }

    async fn read(&self, response: reqwest::Response) -> Page {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        self.absorb(&headers);
        Page { status, headers, body: response.text().await.unwrap() }
    }

    pub async fn get(&self, path: &str) -> Page {
        let r = self.app.client.get(self.app.url(path)).header("cookie", self.cookie_header()).send().await.unwrap();
        self.read(r).await
    }

    /// A form POST as a browser on this site sends it (with `Origin`).
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        self.post_from(path, form, Some(&self.app.address)).await
    }

    pub async fn post_from(&self, path: &str, form: &[(&str, &str)], origin: Option<&str>) -> Page {
        let mut req = self.app.client.post(self.app.url(path)).header("cookie", self.cookie_header()).form(form);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        self.read(req.send().await.unwrap()).await
    }

    /// Posts a form of `page_path` with that page's CSRF token plus `fields`.
    pub async fn submit(&self, page_path: &str, action: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.get(page_path).await.csrf();
        let mut form = vec![("csrf_token", token.as_str())];
        form.extend_from_slice(fields);
        self.post(action, &form).await
    }

    /// Signs in; the answer to the login POST.
    pub async fn login_as(&self, email: &str, password: &str) -> Page {
        let form = self.get("/admin/login").await;
        assert_eq!(form.status, 200);
        let token = form.csrf();
        self.post("/admin/login", &[("csrf_token", &token), ("email", email), ("password", password)]).await
    }

    /// Signs in and checks it worked.
    pub async fn login(&self, email: &str) {
        let answer = self.login_as(email, PASSWORD).await;
        assert_eq!(answer.status, 303, "login failed: {}", answer.body);
        assert_eq!(answer.location(), "/admin");
    }
}

/// A running app with a tenant and a signed-in admin of it.
pub async fn admin_session(app: &TestApp) -> (TenantId, Browser<'_>) {
    let tenant = seed::tenant(&app.db, "Acme");
    let email = admin(&app.db, &tenant);
    let browser = Browser::new(app);
    browser.login(&email).await;
    (tenant, browser)
}

/// A signed-in operator.
pub async fn operator_session(app: &TestApp) -> Browser<'_> {
    let email = operator(&app.db);
    let browser = Browser::new(app);
    browser.login(&email).await;
    browser
}
