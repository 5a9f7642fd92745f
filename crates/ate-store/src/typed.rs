//! Typed access to a [`Store`]: one set of generic methods that every resource kind shares,
//! so a backend implements raw records once and callers still work with model types.

use ate_model::{
    Actor, ActorTemplate, Assignment, Atespace, AuditEvent, FieldSelector, Indexed, Node,
    NodeAssertion, RevokedToken, SigningKeyRecord, Worker, WorkerPool,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{ListOptions, Page, Record, RecordWrite, Result, Store, StoreError};

/// A resource the store can hold: it has a key, a version and a registry.
pub trait Object: Indexed + Serialize + DeserializeOwned + Send + Sync {
    fn key(&self) -> String;
    fn version(&self) -> u64;
    fn set_version(&mut self, version: u64);
}

macro_rules! object {
    ($t:ty, |$s:ident| $key:expr) => {
        impl Object for $t {
            fn key(&$s) -> String {
                $key
            }
            fn version(&self) -> u64 {
                self.version
            }
            fn set_version(&mut self, version: u64) {
                self.version = version;
            }
        }
    };
}

object!(Atespace, |self| self.name.clone());
object!(Actor, |self| self.actor_ref().key());
object!(ActorTemplate, |self| self.id().key());
object!(WorkerPool, |self| self.id().key());
object!(Node, |self| self.name.clone());
object!(Worker, |self| Worker::key(self));
object!(NodeAssertion, |self| NodeAssertion::key(self));
object!(SigningKeyRecord, |self| self.kid.clone());
object!(AuditEvent, |self| self.id.clone());
object!(RevokedToken, |self| self.jti.clone());

fn encode<T: Object>(obj: &T) -> Result<RecordWrite> {
    Ok(RecordWrite {
        key: obj.key(),
        body: serde_json::to_vec(obj).map_err(StoreError::internal)?,
        index: obj.index_values(),
    })
}

/// The write that binds a stored free worker to an assignment, at the next version. Backends
/// call it inside their claim transaction.
pub fn assign_worker(rec: &Record, assignment: &Assignment) -> Result<RecordWrite> {
    let mut worker: Worker = decode(rec)?;
    worker.assignment = Some(assignment.clone());
    worker.set_version(rec.version + 1);
    encode(&worker)
}

/// The JSON of an assignment, as stores splice it into a claimed worker's body under
/// `assignment` (a free worker's body has no such key).
pub fn assignment_json(assignment: &Assignment) -> Result<String> {
    serde_json::to_string(assignment).map_err(StoreError::internal)
}

/// Decodes a stored record, with the record's version as the object's.
pub fn decode<T: Object>(rec: &Record) -> Result<T> {
    let mut obj: T = serde_json::from_slice(&rec.body).map_err(|e| {
        StoreError::Internal(format!("corrupt {} record {}: {e}", T::KIND, rec.key))
    })?;
    obj.set_version(rec.version);
    Ok(obj)
}

impl dyn Store {
    /// Stores a new object; the result carries version 1.
    pub async fn create<T: Object>(&self, mut obj: T) -> Result<T> {
        obj.set_version(1);
        let version = self.create_record(T::KIND, encode(&obj)?).await?;
        obj.set_version(version);
        Ok(obj)
    }

    pub async fn get<T: Object>(&self, key: &str) -> Result<T> {
        decode(&self.get_record(T::KIND, key).await?)
    }

    /// Writes `obj` if the stored version is still `obj.version()`; the result carries the
    /// new version.
    pub async fn update<T: Object>(&self, mut obj: T) -> Result<T> {
        let expected = obj.version();
        obj.set_version(expected + 1);
        let version = self.update_record(T::KIND, encode(&obj)?, expected).await?;
        obj.set_version(version);
        Ok(obj)
    }

    pub async fn delete<T: Object>(&self, key: &str, expected_version: Option<u64>) -> Result<()> {
        self.delete_record(T::KIND, key, expected_version).await
    }

    /// Lists one page, after validating the selectors against the kind's registry.
    pub async fn list<T: Object>(&self, opts: &ListOptions) -> Result<Page<T>> {
        opts.field_selector.validate(T::KIND)?;
        opts.label_selector.validate("label_selector")?;
        opts.after_key()?;
        let page = self.list_records(T::KIND, opts).await?;
        Ok(Page {
            items: page.items.iter().map(decode).collect::<Result<_>>()?,
            continue_token: page.continue_token,
        })
    }

    /// Lists every page.
    pub async fn list_all<T: Object>(&self, opts: &ListOptions) -> Result<Vec<T>> {
        let mut opts = opts.clone();
        let mut out = Vec::new();
        loop {
            let page = self.list::<T>(&opts).await?;
            out.extend(page.items);
            match page.continue_token {
                Some(t) => opts.continue_token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// Claims a free worker matching `selector` for the assignment's actor (see
    /// [`Store::claim_worker`]).
    pub async fn claim(
        &self,
        selector: &FieldSelector,
        assignment: &Assignment,
    ) -> Result<Option<Worker>> {
        selector.validate(ate_model::Kind::Worker)?;
        self.claim_worker(selector, assignment)
            .await?
            .map(|r| decode(&r))
            .transpose()
    }
}
