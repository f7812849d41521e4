//! The console's HTML, written with maud: every string from the data directory or the request
//! goes through maud's escaping (no `PreEscaped` of stored data anywhere), so a value such as
//! `<script>` shows as text. Pages load only `/assets/console.css` and `/assets/console.js`.

use axum::http::StatusCode;
use maud::{html, Markup, DOCTYPE};

use crate::inspect::{self, MessagePage, MessageView, TopicView};
use crate::params::{ChartParams, MessagesParams, ResetParams};
use crate::render::{bytes, timestamp, Rendered};
use crate::Shared;

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · eddy console" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                nav {
                    a.brand href="/topics" { "eddy" }
                    a href="/topics" { "Topics" }
                    a href="/groups" { "Consumer groups" }
                    a href="/metrics" { "Metrics" }
                }
                main { (body) }
            }
        }
    }
}

/// An error page.
pub fn failure(status: StatusCode, message: &str) -> Markup {
    layout(
        "Error",
        html! {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p.error { (message) }
        },
    )
}

fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "–".to_owned(), |r| format!("{r:.1}"))
}

/// `/topics`.
pub fn topics(shared: &Shared, topics: &[TopicView], rates: &[Option<f64>]) -> Markup {
    layout(
        "Topics",
        html! {
            h1 { "Topics" }
            p.muted { "Data directory " code { (shared.data_dir.display()) } }
            @if topics.is_empty() {
                p { "No topics yet." }
            } @else {
                table id="topics" {
                    thead { tr { th { "Topic" } th.num { "Partitions" } th.num { "Records" } th.num { "Size" } th.num { "Records/s (1 min)" } } }
                    tbody {
                        @for (t, r) in topics.iter().zip(rates) {
                            tr {
                                td { a href={ "/topics/" (t.name) } { (t.name) } }
                                td.num { (t.partitions.len()) }
                                td.num { (t.records()) }
                                td.num { (bytes(t.bytes())) }
                                td.num { (rate(*r)) }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// `/topics/T`.
pub fn topic(_shared: &Shared, t: &TopicView, records_per_second: Option<f64>) -> Markup {
    layout(
        &t.name,
        html! {
            h1 { "Topic " span.name { (t.name) } }
            p.actions {
                a.button href={ "/topics/" (t.name) "/messages" } { "Messages" }
                " "
                a.button href={ "/topics/" (t.name) "/chart" } { "Chart" }
            }
            p { (t.records()) " records · " (bytes(t.bytes())) " · " (rate(records_per_second)) " records/s over the last minute" }
            h2 { "Partitions" }
            table id="partitions" {
                thead { tr { th.num { "Partition" } th.num { "Log start" } th.num { "Log end" } th.num { "Last stable" } th.num { "Segments" } th.num { "Size" } } }
                tbody {
                    @for p in &t.partitions {
                        tr {
                            td.num { (p.partition) }
                            td.num { (p.log_start_offset) }
                            td.num { (p.log_end_offset) }
                            td.num { (p.last_stable_offset) }
                            td.num { (p.segments) }
                            td.num { (bytes(p.bytes)) }
                        }
                    }
                }
            }
            h2 { "Settings" }
            table id="settings" {
                tbody {
                    @for (k, v) in &t.settings {
                        tr { th { (k) } td { code { (v) } } }
                    }
                }
            }
        },
    )
}

fn rendered(r: &Option<Rendered>, null: &str) -> Markup {
    match r {
        None => html! { span.muted { (null) } },
        Some(r) => html! {
            pre class={ "value " (r.kind) } { (r.text) }
            @if r.truncated { span.muted { "… first bytes of " (r.len) } }
        },
    }
}

fn message_row(m: &MessageView) -> Markup {
    html! {
        tr {
            td.num { (m.partition) }
            td.num { (m.offset) }
            td.time { (timestamp(m.timestamp)) }
            td.key { (rendered(&m.key, "no key")) }
            td { (rendered(&m.value, "tombstone")) }
            td {
                @for (k, v) in &m.headers {
                    div.header { code { (k) } ": " (rendered(v, "null")) }
                }
            }
        }
    }
}

fn selected(current: Option<&str>, value: &str) -> bool {
    current.unwrap_or("") == value
}

/// `/topics/T/messages`.
pub fn messages(_shared: &Shared, t: &TopicView, q: &MessagesParams, page: &MessagePage) -> Markup {
    let from = q.from.as_deref().unwrap_or("end");
    let partition = q.partition.as_deref().filter(|p| !p.is_empty());
    let next = match (partition, page.next_offsets.values().next()) {
        (Some(p), Some(offset)) if page.next_offsets.len() == 1 && from != "end" => Some(format!(
            "/topics/{}/messages?partition={p}&from=offset&offset={offset}&limit={}&key={}",
            t.name,
            q.limit.as_deref().unwrap_or("50"),
            q.key.as_deref().unwrap_or("")
        )),
        _ => None,
    };
    layout(
        &format!("{} messages", t.name),
        html! {
            h1 { "Messages of " a.name href={ "/topics/" (t.name) } { (t.name) } }
            form id="query" method="get" {
                label { "Partition "
                    select name="partition" {
                        option value="" selected[partition.is_none()] { "all" }
                        @for p in &t.partitions {
                            @let v = p.partition.to_string();
                            option value=(v) selected[partition == Some(v.as_str())] { (v) }
                        }
                    }
                }
                label { "From "
                    select name="from" {
                        @for (v, label) in [("end", "the end"), ("beginning", "the beginning"), ("offset", "offset"), ("time", "time")] {
                            option value=(v) selected[selected(Some(from), v)] { (label) }
                        }
                    }
                }
                label { "Offset " input name="offset" size="10" value=(q.offset.as_deref().unwrap_or("")); }
                label { "Time " input name="time" size="24" placeholder="2024-05-01T12:00:00Z" value=(q.time.as_deref().unwrap_or("")); }
                label { "Key " input name="key" size="16" value=(q.key.as_deref().unwrap_or("")); }
                label { "Records " input name="limit" size="4" value=(q.limit.as_deref().unwrap_or("50")); }
                button type="submit" { "Show" }
                " "
                button id="tail" type="button" data-topic=(t.name) data-partition=(partition.unwrap_or("")) data-key=(q.key.as_deref().unwrap_or("")) { "Live tail" }
            }
            p.muted id="summary" {
                (page.messages.len()) " records"
                @if q.key.is_some() { " · " (page.scanned) " looked at" }
                @if page.scan_capped { " · stopped after " (inspect::MAX_SCAN) " records: narrow the search" }
            }
            table id="messages" {
                thead { tr { th.num { "Partition" } th.num { "Offset" } th { "Timestamp" } th { "Key" } th { "Value" } th { "Headers" } } }
                tbody {
                    @for m in &page.messages { (message_row(m)) }
                }
            }
            @if let Some(next) = next { p { a id="next" href=(next) { "Next page" } } }
        },
    )
}

/// `/topics/T/chart`.
pub fn chart(topic: &str, q: &ChartParams, drawn: Option<(u64, usize)>) -> Markup {
    let field = q.field.as_deref().unwrap_or("");
    let last = q.last.as_deref().unwrap_or("2000");
    layout(
        &format!("{topic} chart"),
        html! {
            h1 { "Chart of " a.name href={ "/topics/" (topic) } { (topic) } }
            form method="get" {
                label { "Number at " input name="field" size="24" placeholder="temperature.mean" value=(field); }
                label { "of the last " input name="last" size="6" value=(last); " records" }
                button type="submit" { "Draw" }
            }
            @if let Some((skipped, lines)) = drawn {
                p.muted { (lines) " series (one per key)" @if skipped > 0 { " · " (skipped) " records without a number there" } }
                img id="chart" alt={ (topic) ": " (field) } src={ "/topics/" (topic) "/chart.svg?field=" (urlencode(field)) "&last=" (urlencode(last)) };
            } @else {
                p { "Give the dotted path of a number in the topic's JSON values, e.g. " code { "temperature.mean" } "." }
            }
        },
    )
}

/// Percent-encodes a query value.
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `/groups`.
pub fn groups(groups: &[eddy::GroupDescription]) -> Markup {
    layout(
        "Consumer groups",
        html! {
            h1 { "Consumer groups" }
            @if groups.is_empty() {
                p { "No consumer groups yet." }
            } @else {
                table id="groups" {
                    thead { tr { th { "Group" } th { "State" } th.num { "Members" } th.num { "Partitions" } th.num { "Lag" } } }
                    tbody {
                        @for g in groups {
                            tr {
                                td { a href={ "/groups/" (g.group) } { (g.group) } }
                                td { (inspect::group_state(g)) }
                                td.num { (g.members.len()) }
                                td.num { (g.partitions.len()) }
                                td.num { (inspect::total_lag(g)) }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn reset_form(shared: &Shared, group: &str, q: Option<&ResetParams>) -> Markup {
    let to = q.map_or("earliest", |q| q.to.as_str());
    html! {
        form id="reset" method="post" action={ "/groups/" (group) "/reset" } {
            input type="hidden" name="token" value=(shared.token);
            label { "Topic " input name="topic" size="20" placeholder="all" value=(q.and_then(|q| q.topic.as_deref()).unwrap_or("")); }
            label { "To "
                select name="to" {
                    @for v in ["earliest", "latest", "current", "offset", "shift-by", "datetime", "duration"] {
                        option value=(v) selected[to == v] { (v) }
                    }
                }
            }
            label { "Value " input name="value" size="24" placeholder="offset, shift, time or PT10M" value=(q.and_then(|q| q.value.as_deref()).unwrap_or("")); }
            label { input type="checkbox" name="keep_state" value="1"; " keep application state" }
            button type="submit" name="execute" value="" { "Preview (dry run)" }
            @if shared.allow_writes {
                " "
                button.danger type="submit" name="execute" value="1" { "Reset offsets" }
            } @else {
                span.muted { " Read-only console: start it with --allow-writes to reset." }
            }
        }
    }
}

/// `/groups/G`.
pub fn group(shared: &Shared, d: &eddy::GroupDescription) -> Markup {
    layout(
        &d.group,
        html! {
            h1 { "Consumer group " span.name { (d.group) } }
            p { "State " strong id="state" { (inspect::group_state(d)) } " · " (d.members.len()) " members · lag " strong id="lag" { (inspect::total_lag(d)) } }
            h2 { "Partitions" }
            table id="offsets" {
                thead { tr { th { "Topic" } th.num { "Partition" } th.num { "Committed" } th.num { "Log end" } th.num { "Lag" } th { "Owner" } } }
                tbody {
                    @for p in &d.partitions {
                        tr {
                            td { a href={ "/topics/" (p.topic) } { (p.topic) } }
                            td.num { (p.partition) }
                            td.num { (p.current_offset.map_or("–".to_owned(), |o| o.to_string())) }
                            td.num { (p.log_end_offset) }
                            td.num { (p.lag.map_or("–".to_owned(), |l| l.to_string())) }
                            td { (p.consumer_id.as_deref().unwrap_or("–")) }
                        }
                    }
                }
            }
            h2 { "Members" }
            @if d.members.is_empty() { p { "No active members." } }
            @else {
                table id="members" {
                    thead { tr { th { "Member" } th { "Topics" } th.num { "Partitions" } } }
                    tbody {
                        @for m in &d.members {
                            tr {
                                td { (m.id) }
                                td { (m.topics.join(", ")) }
                                td.num { (d.partitions.iter().filter(|p| p.consumer_id.as_deref() == Some(m.id.as_str())).count()) }
                            }
                        }
                    }
                }
            }
            h2 { "Lag over time" }
            img id="lag-chart" alt={ (d.group) " lag" } src={ "/groups/" (d.group) "/lag.svg" };
            h2 { "Reset offsets" }
            (reset_form(shared, &d.group, None))
        },
    )
}

/// The answer to a reset form: the plan, and whether it was applied.
pub fn reset(
    shared: &Shared,
    group: &str,
    q: &ResetParams,
    rows: &[eddy::ResetRow],
    executed: bool,
) -> Markup {
    layout(
        &format!("{group} reset"),
        html! {
            h1 { "Reset of " a.name href={ "/groups/" (group) } { (group) } }
            p id="outcome" { @if executed { "Offsets reset." } @else { "Dry run: nothing changed." } }
            table id="plan" {
                thead { tr { th { "Topic" } th.num { "Partition" } th.num { "Committed" } th.num { "New offset" } th { "Note" } } }
                tbody {
                    @for r in rows {
                        tr {
                            td { (r.topic) }
                            td.num { (r.partition) }
                            td.num { (r.current_offset.map_or("–".to_owned(), |o| o.to_string())) }
                            td.num { (r.new_offset) }
                            td { (r.clamped.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
            (reset_form(shared, group, Some(q)))
        },
    )
}
