//! Plans for operators: list, create and edit, through `service::plans::create` and
//! `service::plans::replace` as `POST /api/v1/plans` and `PUT /api/v1/plans/{plan}` do, so a
//! form shows the API's validation messages, each beside its field.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use crate::dashboard::chrome::{self, Chrome, Errors};
use crate::dashboard::session::Form;
use crate::dashboard::{PageError, Session, grouped};
use crate::service::ServiceError;
use crate::service::plans::{self as svc, PlanSpec, PlanView};
use crate::state::AppState;

/// The numeric settings, in form order: (field, label).
const NUMBERS: [(&str, &str); 15] = [
    ("requests_per_minute", "Requests per minute"),
    ("tokens_per_minute", "Tokens per minute"),
    ("audio_seconds_per_minute", "Audio seconds per minute"),
    ("concurrent_requests", "Concurrent requests"),
    ("daily_token_quota", "Daily token quota"),
    ("monthly_token_quota", "Monthly token quota"),
    ("monthly_token_soft_quota", "Monthly token soft quota (alerts only)"),
    ("daily_request_quota", "Daily request quota"),
    ("monthly_request_quota", "Monthly request quota"),
    ("daily_audio_seconds_quota", "Daily audio seconds quota"),
    ("monthly_audio_seconds_quota", "Monthly audio seconds quota"),
    ("max_tokens_cap", "max_tokens cap"),
    ("default_max_tokens", "Default max_tokens"),
    ("max_prompt_chars", "Largest prompt (characters)"),
    ("max_audio_bytes", "Largest audio upload (bytes)"),
];

pub struct PlanRow {
    pub name: String,
    pub href: String,
    pub rpm: String,
    pub tpm: String,
    pub monthly_tokens: String,
    pub weight: i32,
    pub models: String,
}

pub struct Field {
    pub name: &'static str,
    pub label: &'static str,
    pub value: String,
    pub error: Option<String>,
}

/// The plan form's values as typed.
pub struct PlanForm {
    pub name: String,
    pub queue_weight: String,
    pub allowed_models: String,
    pub entitlements: String,
    pub numbers: Vec<(&'static str, String)>,
}

impl PlanForm {
    fn empty() -> PlanForm {
        PlanForm {
            name: String::new(),
            queue_weight: "1".into(),
            allowed_models: "*".into(),
            entitlements: "models:read\nchat:completions\naudio:align".into(),
            numbers: NUMBERS.iter().map(|(f, _)| (*f, String::new())).collect(),
        }
    }

    fn of(p: &PlanSpec) -> PlanForm {
        let s = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
        let values = [
            s(p.requests_per_minute.map(i64::from)),
            s(p.tokens_per_minute),
            s(p.audio_seconds_per_minute.map(i64::from)),
            s(p.concurrent_requests.map(i64::from)),
            s(p.daily_token_quota),
            s(p.monthly_token_quota),
            s(p.monthly_token_soft_quota),
            s(p.daily_request_quota),
            s(p.monthly_request_quota),
            s(p.daily_audio_seconds_quota),
            s(p.monthly_audio_seconds_quota),
            s(p.max_tokens_cap.map(i64::from)),
            s(p.default_max_tokens.map(i64::from)),
            s(p.max_prompt_chars.map(i64::from)),
            p.max_audio_bytes.to_string(),
        ];
        PlanForm {
            name: p.name.clone(),
            queue_weight: p.queue_weight.to_string(),
            allowed_models: p.allowed_models.join("\n"),
            entitlements: p.entitlements.join("\n"),
            numbers: NUMBERS.iter().map(|(f, _)| *f).zip(values).collect(),
        }
    }

    fn from_form(form: &Form) -> PlanForm {
        PlanForm {
            name: form.get("name").to_owned(),
            queue_weight: form.get("queue_weight").trim().to_owned(),
            allowed_models: form.get("allowed_models").to_owned(),
            entitlements: form.get("entitlements").to_owned(),
            numbers: NUMBERS.iter().map(|(f, _)| (*f, form.get(f).trim().to_owned())).collect(),
        }
    }

    fn number(&self, field: &str) -> &str {
        self.numbers.iter().find(|(f, _)| *f == field).map_or("", |(_, v)| v.as_str())
    }

    /// The spec, or the fields that are not numbers.
    fn spec(&self) -> Result<PlanSpec, Errors> {
        let mut errors = Errors::default();
        let mut int = |field: &'static str| -> Option<i64> {
            let v = self.number(field);
            if v.is_empty() {
                return None;
            }
            v.parse::<i64>().map_err(|_| errors.add(field, "must be a whole number (empty = unlimited)")).ok()
        };
        let small = |v: Option<i64>| v.map(|n| i32::try_from(n).unwrap_or(i32::MAX));
        let rpm = small(int("requests_per_minute"));
        let tpm = int("tokens_per_minute");
        let aspm = small(int("audio_seconds_per_minute"));
        let conc = small(int("concurrent_requests"));
        let dtq = int("daily_token_quota");
        let mtq = int("monthly_token_quota");
        let mtsq = int("monthly_token_soft_quota");
        let drq = int("daily_request_quota");
        let mrq = int("monthly_request_quota");
        let dasq = int("daily_audio_seconds_quota");
        let masq = int("monthly_audio_seconds_quota");
        let cap = small(int("max_tokens_cap"));
        let dmt = small(int("default_max_tokens"));
        let mpc = small(int("max_prompt_chars"));
        let mab = int("max_audio_bytes");
        let weight = self.queue_weight.parse::<i32>().map_err(|_| errors.add("queue_weight", "must be a whole number from 1 to 1000")).ok();
        let lines = |text: &str| text.split(['\n', ',']).map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect::<Vec<_>>();
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(PlanSpec {
            name: self.name.trim().to_owned(),
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
            audio_seconds_per_minute: aspm,
            concurrent_requests: conc,
            daily_token_quota: dtq,
            monthly_token_quota: mtq,
            monthly_token_soft_quota: mtsq,
            daily_request_quota: drq,
            monthly_request_quota: mrq,
            daily_audio_seconds_quota: dasq,
            monthly_audio_seconds_quota: masq,
            queue_weight: weight.unwrap_or(1),
            max_tokens_cap: cap,
            default_max_tokens: dmt,
            max_prompt_chars: mpc,
            max_audio_bytes: mab.unwrap_or(25 * 1024 * 1024),
            allowed_models: lines(&self.allowed_models),
            entitlements: lines(&self.entitlements),
        })
    }
}

#[derive(Template)]
#[template(path = "admin/plans.html")]
struct PlansPage {
    chrome: Chrome,
    plans: Vec<PlanRow>,
    /// The form: a new plan, or the plan being edited.
    editing: Option<String>,
    action: String,
    name: String,
    queue_weight: String,
    allowed_models: String,
    entitlements: String,
    fields: Vec<Field>,
    errors: Errors,
}

async fn page(
    req: &HttpRequest,
    state: &AppState,
    s: &Session,
    editing: Option<String>,
    form: PlanForm,
    errors: Errors,
    status: StatusCode,
) -> Result<HttpResponse, PageError> {
    let plans = state.db.run(|conn| Ok(svc::list(conn))).await??;
    let opt = |v: Option<i64>| v.map_or_else(|| "unlimited".into(), grouped);
    let rows = plans
        .into_iter()
        .map(|p: PlanView| PlanRow {
            rpm: opt(p.spec.requests_per_minute.map(i64::from)),
            tpm: opt(p.spec.tokens_per_minute),
            monthly_tokens: opt(p.spec.monthly_token_quota),
            weight: p.spec.queue_weight,
            models: p.spec.allowed_models.join(", "),
            href: plan_path(&p.spec.name),
            name: p.spec.name,
        })
        .collect();
    let fields = NUMBERS
        .iter()
        .map(|(name, label)| Field { name, label, value: form.number(name).to_owned(), error: errors.get(name).map(str::to_owned) })
        .collect();
    let action = editing.as_deref().map_or_else(|| "/admin/plans".to_owned(), plan_path);
    let view = PlansPage {
        chrome: Chrome::new(s, req, None, "/admin/plans"),
        plans: rows,
        editing,
        action,
        name: form.name,
        queue_weight: form.queue_weight,
        allowed_models: form.allowed_models,
        entitlements: form.entitlements,
        fields,
        errors,
    };
    chrome::render_status(req, status, &view)
}

fn plan_path(name: &str) -> String {
    format!("/admin/plans/{}", percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC))
}

pub async fn get_plans(req: HttpRequest, state: web::Data<AppState>, s: Session) -> Result<HttpResponse, PageError> {
    s.require_operator()?;
    page(&req, &state, &s, None, PlanForm::empty(), Errors::default(), StatusCode::OK).await
}

pub async fn get_plan(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    s.require_operator()?;
    let name = path.into_inner();
    let lookup = name.clone();
    let plan = state.db.run(move |conn| Ok(crate::db::plans::find_by_name(conn, &lookup)?)).await?;
    let form = PlanForm::of(&PlanView::from(plan).spec);
    page(&req, &state, &s, Some(name), form, Errors::default(), StatusCode::OK).await
}

async fn save(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    body: web::Bytes,
    editing: Option<String>,
) -> Result<HttpResponse, PageError> {
    s.require_operator()?;
    let form = PlanForm::from_form(&s.form(&req, &body)?);
    let spec = match form.spec() {
        Ok(spec) => spec,
        Err(errors) => return page(&req, &state, &s, editing, form, errors, StatusCode::UNPROCESSABLE_ENTITY).await,
    };
    let actor = s.actor(&state, &req);
    let target = editing.clone();
    let saved = state
        .db
        .run(move |conn| {
            Ok(match &target {
                Some(name) => svc::replace(conn, name, &spec, &actor),
                None => svc::create(conn, &spec, &actor),
            })
        })
        .await?;
    match saved {
        Ok(plan) => {
            if editing.is_some() {
                state.admission.policies.forget_all_tenants();
            }
            Ok(chrome::redirect_with("/admin/plans", &format!("Plan “{}” saved.", plan.spec.name), false))
        }
        Err(ServiceError::Conflict(m)) => {
            let mut errors = Errors::default();
            errors.add("name", m);
            page(&req, &state, &s, editing, form, errors, StatusCode::CONFLICT).await
        }
        Err(e) => {
            let errors = Errors::from_service(e)?;
            page(&req, &state, &s, editing, form, errors, StatusCode::UNPROCESSABLE_ENTITY).await
        }
    }
}

pub async fn create_plan(req: HttpRequest, state: web::Data<AppState>, s: Session, body: web::Bytes) -> Result<HttpResponse, PageError> {
    save(req, state, s, body, None).await
}

pub async fn replace_plan(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    save(req, state, s, body, Some(path.into_inner())).await
}
