//! The console's URLs: HTML pages, their JSON twins under `/api`, the live tail (server-sent
//! events), SVG charts, assets and `/metrics`. Handlers parse and check the request, then read
//! through [`read`], which bounds how many reads run at once and how long each may take.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use eddy::Log;

use crate::inspect::{self, InspectError};
use crate::params::{bad, flag, nonempty, ChartParams, MessagesParams, ResetParams};
use crate::{chart, pages, Shared, REQUEST_TIMEOUT, TAIL_LIFETIME};

type Ctx = State<Arc<Shared>>;

/// Every route of the console.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/topics") }))
        .route("/topics", get(topics_page))
        .route("/topics/{topic}", get(topic_page))
        .route("/topics/{topic}/messages", get(messages_page))
        .route("/topics/{topic}/chart", get(chart_page))
        .route("/topics/{topic}/chart.svg", get(chart_svg))
        .route("/groups", get(groups_page))
        .route("/groups/{group}", get(group_page))
        .route("/groups/{group}/lag.svg", get(lag_svg))
        .route("/groups/{group}/reset", post(reset_page))
        .route("/api/topics", get(topics_api))
        .route("/api/topics/{topic}", get(topic_api))
        .route("/api/topics/{topic}/messages", get(messages_api))
        .route("/api/topics/{topic}/tail", get(tail_api))
        .route("/api/groups", get(groups_api))
        .route("/api/groups/{group}", get(group_api))
        .route("/api/groups/{group}/reset", post(reset_api))
        .route("/metrics", get(metrics))
        .route(
            "/assets/console.css",
            get(|| asset("text/css", include_str!("../assets/console.css"))),
        )
        .route(
            "/assets/console.js",
            get(|| asset("text/javascript", include_str!("../assets/console.js"))),
        )
        .fallback(|| async { Failure::new(StatusCode::NOT_FOUND, "no such page") })
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(shared)
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Pages load nothing from elsewhere and run only the console's own script.
async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// A failed request: its status and what went wrong, as a page or JSON.
pub(crate) struct Failure {
    status: StatusCode,
    message: String,
    json: bool,
}

impl Failure {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
            json: false,
        }
    }

    fn json(mut self) -> Self {
        self.json = true;
        self
    }
}

impl From<InspectError> for Failure {
    fn from(e: InspectError) -> Self {
        let status = match &e {
            InspectError::BadRequest(_) => StatusCode::BAD_REQUEST,
            InspectError::NotFound(_) => StatusCode::NOT_FOUND,
            InspectError::ReadOnly => StatusCode::FORBIDDEN,
            InspectError::Group(eddy::GroupError::GroupActive { .. }) => StatusCode::CONFLICT,
            InspectError::Group(_) | InspectError::Log(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure::new(status, e.to_string())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        if self.json {
            return (
                self.status,
                Json(serde_json::json!({ "error": self.message })),
            )
                .into_response();
        }
        (
            self.status,
            Html(pages::failure(self.status, &self.message).into_string()),
        )
            .into_response()
    }
}

pub(crate) type Reply<T> = Result<T, Failure>;

/// Runs `f` on the blocking pool, at most [`crate::MAX_CONCURRENT_READS`] at a time, failing
/// after [`REQUEST_TIMEOUT`] (the read itself finishes in the background; each is bounded).
pub(crate) async fn read<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&Shared) -> inspect::InspectResult<T> + Send + 'static,
) -> Reply<T> {
    let busy = || {
        Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the console is busy; try again",
        )
    };
    let work = async {
        let _permit = shared.reads.acquire().await.map_err(|_| busy())?;
        let shared = shared.clone();
        let joined = tokio::task::spawn_blocking(move || f(&shared)).await;
        joined
            .map_err(|_| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "the read failed"))?
            .map_err(Failure::from)
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, work).await {
        Ok(reply) => reply,
        Err(_) => Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the read took longer than {REQUEST_TIMEOUT:?}"),
        )),
    }
}

pub(crate) fn checked(kind: &str, name: &str) -> Reply<()> {
    inspect::checked_name(kind, name).map_err(Failure::from)
}

fn html(markup: maud::Markup) -> Response {
    Html(markup.into_string()).into_response()
}

async fn topics_page(State(s): Ctx) -> Reply<Response> {
    let topics = read(&s, |s| all_topics(&s.log)).await?;
    let rates = topics
        .iter()
        .map(|t| s.samples.records_per_second(&t.name))
        .collect::<Vec<_>>();
    Ok(html(pages::topics(&s, &topics, &rates)))
}

fn all_topics(log: &Log) -> inspect::InspectResult<Vec<inspect::TopicView>> {
    inspect::each_present(inspect::topic_names(log)?, |name| inspect::topic(log, name))
}

async fn topics_api(State(s): Ctx) -> Reply<Response> {
    let topics = read(&s, |s| all_topics(&s.log))
        .await
        .map_err(Failure::json)?;
    let rows: Vec<serde_json::Value> = (topics.iter())
        .map(|t| {
            serde_json::json!({
                "name": t.name, "partitions": t.partitions.len(), "records": t.records(),
                "bytes": t.bytes(), "records_per_second": s.samples.records_per_second(&t.name),
            })
        })
        .collect();
    Ok(Json(rows).into_response())
}

async fn topic_page(State(s): Ctx, Path(topic): Path<String>) -> Reply<Response> {
    checked("topic", &topic)?;
    let view = read(&s, move |s| inspect::topic(&s.log, &topic)).await?;
    let rate = s.samples.records_per_second(&view.name);
    Ok(html(pages::topic(&s, &view, rate)))
}

async fn topic_api(State(s): Ctx, Path(topic): Path<String>) -> Reply<Response> {
    checked("topic", &topic).map_err(Failure::json)?;
    let view = read(&s, move |s| inspect::topic(&s.log, &topic))
        .await
        .map_err(Failure::json)?;
    let rate = s.samples.records_per_second(&view.name);
    let mut doc = serde_json::to_value(&view).unwrap_or_default();
    doc["records_per_second"] = rate.into();
    Ok(Json(doc).into_response())
}

async fn messages_page(
    State(s): Ctx,
    Path(topic): Path<String>,
    Query(params): Query<MessagesParams>,
) -> Reply<Response> {
    checked("topic", &topic)?;
    let query = params.query()?;
    let name = topic.clone();
    let (view, page) = read(&s, move |s| {
        Ok((
            inspect::topic(&s.log, &name)?,
            inspect::messages(&s.log, &name, &query)?,
        ))
    })
    .await?;
    Ok(html(pages::messages(&s, &view, &params, &page)))
}

async fn messages_api(
    State(s): Ctx,
    Path(topic): Path<String>,
    Query(params): Query<MessagesParams>,
) -> Reply<Response> {
    checked("topic", &topic).map_err(Failure::json)?;
    let query = params.query().map_err(Failure::json)?;
    let page = read(&s, move |s| inspect::messages(&s.log, &topic, &query))
        .await
        .map_err(Failure::json)?;
    Ok(Json(page).into_response())
}

/// `/api/topics/T/tail`: new records as server-sent events, one event (a JSON array) per
/// batch, polled every 250 ms, for at most [`TAIL_LIFETIME`].
async fn tail_api(
    State(s): Ctx,
    Path(topic): Path<String>,
    Query(params): Query<MessagesParams>,
) -> Reply<Response> {
    checked("topic", &topic).map_err(Failure::json)?;
    let permit = s.tails.clone().try_acquire_owned().map_err(|_| {
        Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} live tails are open already; close one",
                crate::MAX_TAILS
            ),
        )
        .json()
    })?;
    let key = nonempty(&params.key).map(str::to_owned);
    let partition = params.query().map_err(Failure::json)?.partition;
    let name = topic.clone();
    // Starts at the end of every partition now.
    let (_, start) = read(&s, move |s| {
        inspect::tail(&s.log, &name, &BTreeMap::new(), None, 1)
    })
    .await
    .map_err(Failure::json)?;
    let start: BTreeMap<u32, u64> = start
        .into_iter()
        .filter(|(p, _)| partition.is_none_or(|only| only == *p))
        .collect();
    // The permit travels with the stream: it is released when the tail ends.
    let opened = (Instant::now(), permit);
    let state = (s, topic, key, partition, start, opened);
    let events = futures_util::stream::unfold(
        state,
        |(s, topic, key, partition, from, opened)| async move {
            loop {
                if s.closing.load(Ordering::Relaxed) || opened.0.elapsed() > TAIL_LIFETIME {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                let (t, k, f) = (topic.clone(), key.clone(), from.clone());
                let polled = read(&s, move |s| {
                    inspect::tail(&s.log, &t, &f, k.as_deref(), inspect::MAX_PAGE)
                })
                .await;
                let Ok((records, next)) = polled else {
                    return None; // the topic went away
                };
                let next: BTreeMap<u32, u64> = next
                    .into_iter()
                    .filter(|(p, _)| partition.is_none_or(|only| only == *p))
                    .collect();
                let records: Vec<_> = records
                    .into_iter()
                    .filter(|m| partition.is_none_or(|only| only == m.partition))
                    .collect();
                if records.is_empty() {
                    continue;
                }
                let event = Event::default().json_data(&records).unwrap_or_default();
                return Some((
                    Ok::<_, Infallible>(event),
                    (s, topic, key, partition, next, opened),
                ));
            }
        },
    );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn field_chart(
    s: &Arc<Shared>,
    topic: String,
    params: &ChartParams,
) -> Reply<(String, u64, usize)> {
    checked("topic", &topic)?;
    let (field, last) = (params.field()?, params.last()?);
    let title = format!("{topic}: {field}");
    read(s, move |s| {
        let (series, skipped) =
            chart::field_series(inspect::chart_points(&s.log, &topic, &field, last)?);
        let svg =
            chart::line_chart(&title, &field, &series, false).map_err(InspectError::BadRequest)?;
        Ok((svg, skipped, series.len()))
    })
    .await
}

async fn chart_page(
    State(s): Ctx,
    Path(topic): Path<String>,
    Query(params): Query<ChartParams>,
) -> Reply<Response> {
    checked("topic", &topic)?;
    let chart = match nonempty(&params.field) {
        Some(_) => Some(field_chart(&s, topic.clone(), &params).await?),
        None => None,
    };
    Ok(html(pages::chart(
        &topic,
        &params,
        chart.as_ref().map(|(_, skipped, lines)| (*skipped, *lines)),
    )))
}

fn svg(body: String) -> Response {
    ([(header::CONTENT_TYPE, "image/svg+xml")], body).into_response()
}

async fn chart_svg(
    State(s): Ctx,
    Path(topic): Path<String>,
    Query(params): Query<ChartParams>,
) -> Reply<Response> {
    Ok(svg(field_chart(&s, topic, &params).await?.0))
}

async fn lag_svg(State(s): Ctx, Path(group): Path<String>) -> Reply<Response> {
    checked("group", &group)?;
    let mut series = chart::Series::new();
    let points: Vec<(i64, f64)> = s
        .samples
        .lag_history(&group)
        .into_iter()
        .map(|(t, lag)| (t, lag as f64))
        .collect();
    series.insert("lag".to_owned(), points);
    let svg_text = chart::line_chart(&format!("{group}: lag"), "records behind", &series, true)
        .map_err(bad)?;
    Ok(svg(svg_text))
}

async fn groups_page(State(s): Ctx) -> Reply<Response> {
    let groups = read(&s, |s| all_groups(&s.log)).await?;
    Ok(html(pages::groups(&groups)))
}

fn all_groups(log: &Log) -> inspect::InspectResult<Vec<eddy::GroupDescription>> {
    inspect::each_present(inspect::group_names(log)?, |name| inspect::group(log, name))
}

async fn groups_api(State(s): Ctx) -> Reply<Response> {
    let groups = read(&s, |s| all_groups(&s.log))
        .await
        .map_err(Failure::json)?;
    Ok(Json(groups.iter().map(group_json).collect::<Vec<_>>()).into_response())
}

fn group_json(d: &eddy::GroupDescription) -> serde_json::Value {
    let mut doc = serde_json::to_value(d).unwrap_or_default();
    doc["state"] = inspect::group_state(d).into();
    doc["lag"] = inspect::total_lag(d).into();
    doc
}

async fn group_page(State(s): Ctx, Path(group): Path<String>) -> Reply<Response> {
    checked("group", &group)?;
    let d = read(&s, move |s| inspect::group(&s.log, &group)).await?;
    Ok(html(pages::group(&s, &d)))
}

async fn group_api(State(s): Ctx, Path(group): Path<String>) -> Reply<Response> {
    checked("group", &group).map_err(Failure::json)?;
    let d = read(&s, move |s| inspect::group(&s.log, &group))
        .await
        .map_err(Failure::json)?;
    let mut doc = group_json(&d);
    doc["lag_history"] = serde_json::to_value(s.samples.lag_history(&d.group)).unwrap_or_default();
    Ok(Json(doc).into_response())
}

async fn plan_or_reset(
    s: &Arc<Shared>,
    group: String,
    params: &ResetParams,
) -> Reply<(Vec<eddy::ResetRow>, bool)> {
    checked("group", &group)?;
    let request = params.request()?;
    let execute = flag(&params.execute);
    if execute && !s.allow_writes {
        return Err(InspectError::ReadOnly.into());
    }
    let rows = read(s, move |s| {
        let writable = if execute {
            Some(Log::open(&s.data_dir)?)
        } else {
            None
        };
        inspect::reset(&s.log, writable.as_ref(), &group, &request, execute)
    })
    .await?;
    Ok((rows, execute))
}

async fn reset_page(
    State(s): Ctx,
    Path(group): Path<String>,
    Form(params): Form<ResetParams>,
) -> Reply<Response> {
    if params.token.as_deref() != Some(s.token.as_str()) {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            "this form did not come from this console (reload the group page)",
        ));
    }
    let (rows, executed) = plan_or_reset(&s, group.clone(), &params).await?;
    Ok(html(pages::reset(&s, &group, &params, &rows, executed)))
}

async fn reset_api(
    State(s): Ctx,
    Path(group): Path<String>,
    Json(params): Json<ResetParams>,
) -> Reply<Response> {
    let (rows, executed) = plan_or_reset(&s, group, &params)
        .await
        .map_err(Failure::json)?;
    Ok(Json(serde_json::json!({ "executed": executed, "rows": rows })).into_response())
}

async fn metrics(State(s): Ctx) -> Reply<Response> {
    let text = read(&s, |s| crate::metrics::encode_console_metrics(&s.log)).await?;
    Ok(([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], text).into_response())
}

/// The content type of the OpenMetrics text format, which Prometheus scrapes.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
