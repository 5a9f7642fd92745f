//! The Redis/Valkey store. Each record is a hash (`v` version, `b` JSON body, `e` index
//! entries); every index is a sorted set of keys with score 0, so members come back in key
//! order and pages are `ZRANGEBYLEX` ranges: one set per kind, one per field value
//! (`ix:workers:pool:cpu`, `ix:workers:cached_snapshot:S`, labels as `labels:k=v`) and one
//! per compound index of the registry (`cx:workers:pool,actor_id:cpu\x1f` = free workers of
//! pool cpu). Every write, claim, atespace delete and lease change is one Lua script, so
//! indexes change atomically with records; selectors walk the smallest matching index, never
//! the keyspace. All keys share the hash tag of the prefix (one cluster slot). Writes publish
//! events on `<prefix>events` for watches; those of a secret kind (`Kind::is_secret`) carry
//! the key and version only, and the watch reads the record.

mod scripts;
mod watch;

use std::time::Duration;

use async_trait::async_trait;
use ate_model::fields::{IndexValues, LABELS_INDEX};
use ate_model::{Assignment, FieldSelector, Kind, LabelSelector, Op};
use ate_store::typed::assignment_json;
use ate_store::{
    Lease, ListOptions, Page, Record, RecordWrite, Result, Store, StoreError, Watch, encode_token,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Value};

/// Keys of every store share this prefix; the braces are a cluster hash tag.
pub const DEFAULT_PREFIX: &str = "ate:{ate}:";

/// Most index entries one list call looks at before returning a short page with a token.
const LIST_SCAN_CAP: usize = 10_000;
/// Most entries a claim looks at while searching for a free worker.
const CLAIM_SCAN_CAP: usize = 1_000_000;

/// A store in a Redis or Valkey server.
#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Maps a driver error: connection trouble is `Unavailable`, script errors `Internal`.
pub(crate) fn redis_err(e: redis::RedisError) -> StoreError {
    if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
    {
        StoreError::Unavailable(format!("redis: {e}"))
    } else {
        StoreError::Internal(format!("redis: {e}"))
    }
}

/// What a script needs to know of a kind's registry, built once per kind (claims and writes
/// pass it on every call).
fn schema(kind: Kind) -> &'static str {
    static SCHEMAS: std::sync::LazyLock<std::collections::HashMap<Kind, String>> =
        std::sync::LazyLock::new(|| {
            Kind::ALL
                .into_iter()
                .map(|k| (k, build_schema(k)))
                .collect()
        });
    SCHEMAS.get(&kind).map(String::as_str).unwrap_or("{}")
}

fn build_schema(kind: Kind) -> String {
    let mut multi = serde_json::Map::new();
    multi.insert(LABELS_INDEX.into(), true.into());
    for f in kind.fields().iter().filter(|f| f.multi) {
        multi.insert(f.name.into(), true.into());
    }
    serde_json::json!({
        "multi": multi,
        "compound": kind.compound_indexes(),
        "secret": kind.is_secret(),
    })
    .to_string()
}

fn entries(index: &IndexValues) -> String {
    let pairs: Vec<[&str; 2]> = index.iter().map(|(f, v)| [*f, v.as_str()]).collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".into())
}

fn requirements(fields: &FieldSelector, labels: &LabelSelector) -> String {
    let mut reqs: Vec<[String; 3]> = fields
        .requirements
        .iter()
        .map(|r| {
            let op = if r.op == Op::Eq { "=" } else { "!" };
            [r.field.clone(), op.into(), r.value.clone()]
        })
        .collect();
    for (k, v) in &labels.match_labels {
        reqs.push([LABELS_INDEX.into(), "=".into(), format!("{k}={v}")]);
    }
    serde_json::to_string(&reqs).unwrap_or_else(|_| "[]".into())
}

fn text(v: &Value) -> Result<String> {
    match v {
        Value::BulkString(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        other => Err(StoreError::Internal(format!(
            "unexpected redis reply {other:?}"
        ))),
    }
}

fn status(reply: &[Value]) -> Result<String> {
    reply
        .first()
        .map(text)
        .transpose()?
        .ok_or_else(|| StoreError::internal("empty script reply"))
}

fn record(key: &Value, version: &Value, body: &Value) -> Result<Record> {
    let version = text(version)?
        .parse::<u64>()
        .map_err(|e| StoreError::Internal(format!("bad version: {e}")))?;
    Ok(Record {
        key: text(key)?,
        version,
        body: text(body)?.into_bytes(),
    })
}

impl RedisStore {
    /// Releases (`release`) or retires (`retire`) a lease `owner` holds.
    async fn give_up_lease(&self, how: &str, key: &str, owner: &str) -> Result<()> {
        let reply = self.run(&scripts::LEASE, &[how, key, owner, "0"]).await?;
        match status(&reply)?.as_str() {
            "ok" => Ok(()),
            _ => Err(StoreError::LeaseNotHeld { key: key.into() }),
        }
    }

    /// Connects (one attempt; callers retry). Commands time out after 5 s, and a lost
    /// connection is re-established in the background.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with_prefix(url, DEFAULT_PREFIX).await
    }

    pub async fn connect_with_prefix(url: &str, prefix: &str) -> Result<Self> {
        let client = Client::open(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid redis URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let mut conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(redis_err)?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(Self {
            client,
            conn,
            prefix: prefix.to_string(),
        })
    }

    async fn run(&self, script: &redis::Script, args: &[&str]) -> Result<Vec<Value>> {
        let mut inv = script.prepare_invoke();
        inv.arg(&self.prefix);
        for a in args {
            inv.arg(*a);
        }
        let mut conn = self.conn.clone();
        inv.invoke_async(&mut conn).await.map_err(redis_err)
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn create_record(&self, kind: Kind, rec: RecordWrite) -> Result<u64> {
        let parent = rec.parent(kind);
        let (pkind, pkey) = match &parent {
            Some((p, key)) => (p.plural(), key.clone()),
            None => ("", String::new()),
        };
        let body = String::from_utf8_lossy(&rec.body);
        let reply = self
            .run(
                &scripts::CREATE,
                &[
                    kind.plural(),
                    &rec.key,
                    &body,
                    &entries(&rec.index),
                    schema(kind),
                    pkind,
                    &pkey,
                ],
            )
            .await?;
        match status(&reply)?.as_str() {
            "ok" => Ok(1),
            "exists" => Err(StoreError::AlreadyExists { kind, key: rec.key }),
            "parent" => Err(StoreError::ParentMissing {
                kind: parent.map(|p| p.0).unwrap_or(kind),
                key: pkey,
            }),
            other => Err(StoreError::Internal(format!("create: unexpected {other}"))),
        }
    }

    async fn get_record(&self, kind: Kind, key: &str) -> Result<Record> {
        let mut conn = self.conn.clone();
        let (v, b): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(format!("{}r:{}:{key}", self.prefix, kind.plural()))
            .arg("v")
            .arg("b")
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        match (v, b) {
            (Some(v), Some(b)) => Ok(Record {
                key: key.into(),
                version: v
                    .parse()
                    .map_err(|e| StoreError::Internal(format!("bad version: {e}")))?,
                body: b.into_bytes(),
            }),
            _ => Err(StoreError::NotFound {
                kind,
                key: key.into(),
            }),
        }
    }

    async fn update_record(&self, kind: Kind, rec: RecordWrite, expected: u64) -> Result<u64> {
        let body = String::from_utf8_lossy(&rec.body);
        let reply = self
            .run(
                &scripts::UPDATE,
                &[
                    kind.plural(),
                    &rec.key,
                    &body,
                    &entries(&rec.index),
                    schema(kind),
                    &expected.to_string(),
                ],
            )
            .await?;
        match status(&reply)?.as_str() {
            "ok" => Ok(expected + 1),
            "missing" => Err(StoreError::NotFound { kind, key: rec.key }),
            "conflict" => Err(StoreError::Conflict { kind, key: rec.key }),
            other => Err(StoreError::Internal(format!("update: unexpected {other}"))),
        }
    }

    async fn delete_record(&self, kind: Kind, key: &str, expected: Option<u64>) -> Result<()> {
        let children: Vec<[&str; 2]> = kind.children().map(|(k, f)| [k.plural(), f]).collect();
        let children = serde_json::to_string(&children).unwrap_or_else(|_| "[]".into());
        let expected = expected.map(|v| v.to_string()).unwrap_or_default();
        let reply = self
            .run(
                &scripts::DELETE,
                &[kind.plural(), key, &expected, &children, schema(kind)],
            )
            .await?;
        match status(&reply)?.as_str() {
            "ok" => Ok(()),
            "missing" => Err(StoreError::NotFound {
                kind,
                key: key.into(),
            }),
            "conflict" => Err(StoreError::Conflict {
                kind,
                key: key.into(),
            }),
            "notempty" => Err(StoreError::NotEmpty {
                kind,
                key: key.into(),
            }),
            other => Err(StoreError::Internal(format!("delete: unexpected {other}"))),
        }
    }

    async fn list_records(&self, kind: Kind, opts: &ListOptions) -> Result<Page<Record>> {
        let size = opts.page_size();
        let after = opts.after_key()?.unwrap_or_default();
        let reply = self
            .run(
                &scripts::LIST,
                &[
                    kind.plural(),
                    schema(kind),
                    &requirements(&opts.field_selector, &opts.label_selector),
                    &after,
                    &(size + 1).to_string(),
                    &LIST_SCAN_CAP.to_string(),
                ],
            )
            .await?;
        let exhausted = status(&reply)? == "1";
        let last_seen = reply.get(1).map(text).transpose()?.unwrap_or_default();
        let items = reply[2..]
            .chunks(3)
            .map(|c| match c {
                [k, v, b] => record(k, v, b),
                _ => Err(StoreError::internal("list: truncated reply")),
            })
            .collect::<Result<Vec<_>>>()?;
        let mut page = Page::from_fetched(items, size, |r| &r.key);
        if page.continue_token.is_none() && !exhausted && !last_seen.is_empty() {
            // The scan stopped early: the page is short, and the next one resumes there.
            page.continue_token = Some(encode_token(&last_seen));
        }
        Ok(page)
    }

    async fn claim_worker(
        &self,
        selector: &FieldSelector,
        assignment: &Assignment,
    ) -> Result<Option<Record>> {
        let free = selector.clone().and_eq("actor_id", "");
        let reply = self
            .run(
                &scripts::CLAIM,
                &[
                    schema(Kind::Worker),
                    &requirements(&free, &LabelSelector::default()),
                    &assignment.actor.atespace,
                    &assignment.actor.id,
                    &assignment_json(assignment)?,
                    &CLAIM_SCAN_CAP.to_string(),
                ],
            )
            .await?;
        match reply.as_slice() {
            [] => Ok(None),
            [k, v, b] => record(k, v, b).map(Some),
            _ => Err(StoreError::internal("claim: unexpected reply")),
        }
    }

    async fn acquire_lease(&self, key: &str, owner: &str, ttl: Duration) -> Result<Lease> {
        let ttl = ttl.as_millis().to_string();
        let reply = self
            .run(&scripts::LEASE, &["acquire", key, owner, &ttl])
            .await?;
        match (status(&reply)?.as_str(), reply.get(1), reply.get(2)) {
            ("ok", Some(exp), Some(generation)) => Ok(Lease {
                key: key.into(),
                owner: owner.into(),
                expires_at_ms: text(exp)?.parse().map_err(StoreError::internal)?,
                generation: text(generation)?.parse().map_err(StoreError::internal)?,
            }),
            ("held", _, _) => Err(StoreError::LeaseHeld { key: key.into() }),
            (other, _, _) => Err(StoreError::Internal(format!("lease: unexpected {other}"))),
        }
    }

    async fn release_lease(&self, key: &str, owner: &str) -> Result<()> {
        self.give_up_lease("release", key, owner).await
    }

    async fn retire_lease(&self, key: &str, owner: &str) -> Result<()> {
        self.give_up_lease("retire", key, owner).await
    }

    async fn watch(&self, kind: Kind) -> Result<Watch> {
        watch::start(self.clone(), format!("{}events", self.prefix), kind).await
    }
}
