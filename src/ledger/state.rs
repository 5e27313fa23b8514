//! The ledger stage's dedup state on disk: per owned partition of the units topic, every
//! paid unit key and the source that paid it, in an embedded LSM store (fjall).
//!
//! Why fjall: pure Rust (a clean build adds ~1 min on 2 cores, RocksDB's C++ ~10), an LSM
//! with bloom filters so the common case — a key never seen — is answered without a disk
//! read, batched atomic writes across partitions, a journal that survives `kill -9`, and
//! bounded memory (block cache and write buffers are settings). Keys are 16-byte hashes
//! ([`crate::route::key_hash`]), values the 16-byte packed source and the 8-byte ledger
//! position ([`crate::route::ledger_position`]) of the record's row: a void that comes
//! after its record names that row, so the views find it by primary key.
//!
//! A store written before positions were kept (16-byte values, its marks under `mark/`)
//! has no mark under [`MARK_PREFIX`], so each partition is read again from ClickHouse once,
//! which rewrites every value with its position.
//!
//! ## Consistent with ClickHouse
//! ClickHouse's `unit_decisions` is the truth; the store is a cache of its `reason = ''`
//! rows, written only *after* they are durable there ([`LedgerState::commit`]). Decisions
//! not yet durable live in an in-memory overlay bounded by the batches in flight. So the
//! store never holds a unit ClickHouse lacks; it may lag (a crash between the insert and
//! the store write, a partition that another instance advanced meanwhile). On assignment,
//! [`LedgerState::reconcile`] compares the store's mark with ClickHouse's and reads only
//! the rows after the mark; a store from another life (its last row is not ClickHouse's)
//! or a lost one is rebuilt for that partition alone.

use crate::dedup::Seen;
use fjall::config::{PartitioningPolicy, PinningPolicy};
use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Block cache of the whole store, bytes: besides data blocks it holds the bloom filters
/// and index blocks of every level below the first, so it is what bounds the store's
/// memory however many keys it holds.
const CACHE_BYTES: u64 = 48 << 20;
/// One partition's memtable, bytes (12 owned partitions: ≤ 48 MiB active at once).
const MEMTABLE_BYTES: u64 = 4 << 20;
/// Journal size after which memtables are flushed, bytes. A start replays what the journal
/// holds beyond the flushed tables (fjall does not flush memtables on close), so this bounds
/// the restart: 256 MiB took ~3 s to replay here, fjall's minimum of 64 MiB under 1 s.
const JOURNAL_BYTES_MAX: u64 = 64 << 20;

/// What went wrong with the state directory, with what to do.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("ledger state in {dir}: {source}; check the disk, or delete the directory to rebuild it from ClickHouse")]
    Store { dir: PathBuf, source: fjall::Error },
    #[error("ledger state in {dir}: cannot create or lock the directory: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("ledger state in {dir} is in use by another running instance; give every instance its own --state-dir (SUBSIDY_STATE_DIR)")]
    InUse { dir: PathBuf },
}

/// A source packed as stored: interned topic id, partition, offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedSource {
    pub topic_id: u32,
    pub partition: u32,
    pub offset: u64,
}

impl PackedSource {
    fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..4].copy_from_slice(&self.topic_id.to_le_bytes());
        out[4..8].copy_from_slice(&self.partition.to_le_bytes());
        out[8..].copy_from_slice(&self.offset.to_le_bytes());
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<PackedSource> {
        (bytes.len() == 16).then(|| PackedSource {
            topic_id: u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")),
            partition: u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes")),
            offset: u64::from_le_bytes(bytes[8..].try_into().expect("8 bytes")),
        })
    }
}

/// Where a partition's store stands: the units-topic offset after its last durable row,
/// and that row's source (to tell a store of this database from one of another life).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub next_offset: u64,
    pub last_source: PackedSource,
}

impl Mark {
    fn to_bytes(self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&self.next_offset.to_le_bytes());
        out[8..].copy_from_slice(&self.last_source.to_bytes());
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Mark> {
        if bytes.len() != 24 {
            return None;
        }
        Some(Mark {
            next_offset: u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")),
            last_source: PackedSource::from_bytes(&bytes[8..])?,
        })
    }
}

/// Prefix of a partition's mark in the meta keyspace (`mark2/{partition}`): the `2` is the
/// value format (source and position); a store of the first format has only `mark/` keys.
const MARK_PREFIX: &str = "mark2";

/// One unit decided new and not yet durable in the store.
#[derive(Debug, Clone, Copy)]
pub struct PendingUnit {
    pub partition: i32,
    pub key: u128,
    pub source: PackedSource,
    /// The ledger position of its row ([`crate::route::ledger_position`]).
    pub position: u64,
}

/// A record the store knows: the source that created it and, unless it was stored in the
/// first format, its row's ledger position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownRecord {
    pub source: PackedSource,
    pub position: Option<u64>,
}

impl KnownRecord {
    fn from_value(bytes: &[u8]) -> Option<KnownRecord> {
        let source = PackedSource::from_bytes(bytes.get(..16)?)?;
        let position = match bytes.len() {
            16 => None,
            24 => Some(u64::from_le_bytes(bytes[16..].try_into().expect("8 bytes"))),
            _ => return None,
        };
        Some(KnownRecord { source, position })
    }
}

fn stored_value(source: PackedSource, position: u64) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..16].copy_from_slice(&source.to_bytes());
    out[16..].copy_from_slice(&position.to_le_bytes());
    out
}

/// Hashes a key hash by taking its low 64 bits: the keys are xxh3 digests already, so
/// SipHash on top only costs time.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyHashBuilder;

impl std::hash::BuildHasher for KeyHashBuilder {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

/// See [`KeyHashBuilder`]; any other input is folded in FNV-style.
#[derive(Debug, Clone, Copy)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u128(&mut self, key: u128) {
        self.0 ^= key as u64;
    }
}

/// A source decided as something other than a unit: a `duplicate`, or a row ClickHouse
/// refused (`storage_refused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtherSource {
    pub partition: i32,
    pub source: PackedSource,
    pub refused: bool,
}

/// The dedup state of the partitions this instance owns.
pub struct LedgerState {
    dir: PathBuf,
    /// Held (an exclusive lock) while this process uses the directory: two processes
    /// writing one store would corrupt it.
    _lock: std::fs::File,
    db: Database,
    meta: Keyspace,
    partitions: HashMap<i32, Keyspace>,
    topics: Vec<String>,
    /// Decided new, not yet durable in ClickHouse and the store.
    pending: HashMap<u128, PendingUnit, KeyHashBuilder>,
    /// Sources decided as something other than a unit (a `duplicate`, `storage_refused`),
    /// not yet durable: (units-topic partition, source).
    pending_others: std::collections::HashSet<(i32, [u8; 16])>,
    /// Open `decided-{p}` partitions: the sources decided as something other than a unit,
    /// so a second copy of such a record is recognised too.
    others: HashMap<i32, Keyspace>,
    /// Per partition, whether it ever stored a refused source (meta `refused/{p}`). Only
    /// then can a key the store lacks belong to a record decided before, so the common
    /// case of a new key skips the `decided-{p}` lookup.
    refused_any: HashMap<i32, bool>,
}

/// A units or decided-sources partition's options. Only the first level's bloom filters
/// and the first two levels' indexes stay pinned in memory (fjall's defaults); deeper
/// levels' filters and indexes, which grow with every key ever paid, are read through the
/// block cache, partitioned from the fourth level on so a lookup loads one small block.
/// That keeps memory flat in history: at 50 M keys the filters alone are ~60 MB.
fn keyspace_options(memtable_bytes: u64) -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default()
        .max_memtable_size(memtable_bytes)
        .filter_block_pinning_policy(PinningPolicy::new([true, false]))
        .index_block_pinning_policy(PinningPolicy::new([true, true, false]))
        .filter_block_partitioning_policy(PartitioningPolicy::new([false, false, false, true]))
        .index_block_partitioning_policy(PartitioningPolicy::new([false, false, false, true]))
}

impl LedgerState {
    /// Opens the store in `dir`; a store that cannot be recovered (a crash while fjall
    /// created a partition, a damaged disk) is moved aside to `<dir>.unreadable-<millis>`
    /// and a fresh one started: the state is a cache of ClickHouse, and each partition is
    /// rebuilt from there when assigned.
    pub fn open_or_rebuild(dir: &Path) -> Result<LedgerState, StateError> {
        match LedgerState::open(dir) {
            Err(StateError::Store { source, .. }) => {
                let millis = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                let aside = dir.with_extension(format!("unreadable-{millis}"));
                tracing::warn!(message = "Ledger state cannot be recovered; moving it aside and rebuilding from ClickHouse.", dir = %dir.display(), aside = %aside.display(), error = %source);
                std::fs::rename(dir, &aside).map_err(|source| StateError::Dir {
                    dir: dir.to_path_buf(),
                    source,
                })?;
                LedgerState::open(dir)
            }
            other => other,
        }
    }

    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<LedgerState, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Dir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK.subsidy"))
            .map_err(|source| StateError::Dir {
                dir: dir.to_path_buf(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateError::InUse {
                    dir: dir.to_path_buf(),
                })
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StateError::Dir {
                    dir: dir.to_path_buf(),
                    source,
                })
            }
        }
        let err = |source| StateError::Store {
            dir: dir.to_path_buf(),
            source,
        };
        let db = Database::builder(dir)
            .cache_size(CACHE_BYTES)
            .max_journaling_size(JOURNAL_BYTES_MAX)
            .open()
            .map_err(err)?;
        let meta = db
            .keyspace("meta", KeyspaceCreateOptions::default)
            .map_err(err)?;
        let mut topics = Vec::new();
        for guard in meta.prefix(b"topic/") {
            let (key, value) = guard.into_inner().map_err(err)?;
            let id: usize = std::str::from_utf8(&key[b"topic/".len()..])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(usize::MAX);
            if id != usize::MAX {
                if topics.len() <= id {
                    topics.resize(id + 1, String::new());
                }
                topics[id] = String::from_utf8_lossy(&value).into_owned();
            }
        }
        Ok(LedgerState {
            dir: dir.to_path_buf(),
            _lock: lock,
            db,
            meta,
            partitions: HashMap::new(),
            topics,
            pending: HashMap::default(),
            pending_others: std::collections::HashSet::new(),
            others: HashMap::new(),
            refused_any: HashMap::new(),
        })
    }

    fn err(&self) -> impl Fn(fjall::Error) -> StateError + '_ {
        |source| StateError::Store {
            dir: self.dir.clone(),
            source,
        }
    }

    fn partition(&mut self, partition: i32) -> Result<Keyspace, StateError> {
        if let Some(handle) = self.partitions.get(&partition) {
            return Ok(handle.clone());
        }
        let handle = self
            .db
            .keyspace(
                &format!("units-{partition}.{}", self.generation(partition)?),
                || keyspace_options(MEMTABLE_BYTES),
            )
            .map_err(self.err())?;
        self.partitions.insert(partition, handle.clone());
        Ok(handle)
    }

    fn others_partition(&mut self, partition: i32) -> Result<Keyspace, StateError> {
        if let Some(handle) = self.others.get(&partition) {
            return Ok(handle.clone());
        }
        let handle = self
            .db
            .keyspace(
                &format!("decided-{partition}.{}", self.generation(partition)?),
                || keyspace_options(MEMTABLE_BYTES / 4),
            )
            .map_err(self.err())?;
        self.others.insert(partition, handle.clone());
        Ok(handle)
    }

    /// Returns true if and only if `source` was decided as something other than a unit.
    fn decided_other(&mut self, partition: i32, source: PackedSource) -> Result<bool, StateError> {
        let bytes = source.to_bytes();
        if self.pending_others.contains(&(partition, bytes)) {
            return Ok(true);
        }
        let handle = self.others_partition(partition)?;
        handle.contains_key(bytes).map_err(self.err())
    }

    /// Returns true if and only if `partition` ever stored a refused source.
    fn refused_any(&mut self, partition: i32) -> Result<bool, StateError> {
        if let Some(&any) = self.refused_any.get(&partition) {
            return Ok(any);
        }
        let any = self
            .meta
            .contains_key(format!("refused/{partition}"))
            .map_err(self.err())?;
        self.refused_any.insert(partition, any);
        Ok(any)
    }

    /// The generation of a partition's keyspace partitions: a wipe moves to fresh ones
    /// (fjall should not re-create a partition under the name of one being deleted).
    fn generation(&self, partition: i32) -> Result<u32, StateError> {
        let value = self
            .meta
            .get(format!("generation/{partition}"))
            .map_err(self.err())?;
        Ok(value
            .and_then(|v| <[u8; 4]>::try_from(&*v).ok())
            .map_or(0, u32::from_le_bytes))
    }

    /// The interned id of a topic name, persisting a new one.
    pub fn topic_id(&mut self, topic: &str) -> Result<u32, StateError> {
        if let Some(id) = self.topics.iter().position(|t| t == topic) {
            return Ok(id as u32);
        }
        let id = self.topics.len();
        self.meta
            .insert(format!("topic/{id}"), topic.as_bytes())
            .map_err(self.err())?;
        self.topics.push(topic.to_string());
        Ok(id as u32)
    }

    /// The topic name of an interned id.
    pub fn topic_name(&self, id: u32) -> &str {
        self.topics.get(id as usize).map_or("?", String::as_str)
    }

    /// Where the store of `partition` stands, if it holds anything.
    pub fn mark(&self, partition: i32) -> Result<Option<Mark>, StateError> {
        let value = self
            .meta
            .get(format!("{MARK_PREFIX}/{partition}"))
            .map_err(self.err())?;
        Ok(value.and_then(|v| Mark::from_bytes(&v)))
    }

    /// Units stored for `partition`, counted exactly (reads the partition: for checks).
    pub fn units_stored(&mut self, partition: i32) -> Result<usize, StateError> {
        self.partition(partition)?.len().map_err(self.err())
    }

    /// Units stored for `partition` (an estimate, for logs: cheap).
    pub fn approximate_units(&mut self, partition: i32) -> Result<usize, StateError> {
        Ok(self.partition(partition)?.approximate_len())
    }

    /// Decides whether `source` pays `key` in `partition`, recording it as pending if so.
    /// `position` is where the record's row will be ([`crate::route::ledger_position`]).
    pub fn check_and_record(
        &mut self,
        partition: i32,
        key: u128,
        source: PackedSource,
        position: u64,
    ) -> Result<Seen, StateError> {
        let existing = self.peek(partition, key)?.map(|known| known.source);
        Ok(match existing {
            // A second copy of a record whose unit row ClickHouse refused pays nothing either.
            None if self.refused_any(partition)? && self.decided_other(partition, source)? => {
                Seen::SameMessage
            }
            None => {
                self.pending.insert(
                    key,
                    PendingUnit {
                        partition,
                        key,
                        source,
                        position,
                    },
                );
                Seen::New
            }
            Some(existing) if existing == source => Seen::SameMessage,
            // A second copy of a record decided as a duplicate before is not a new one.
            Some(_) if self.decided_other(partition, source)? => Seen::SameMessage,
            Some(existing) => {
                self.record_other(partition, source);
                Seen::DuplicateOf(format!(
                    "{}/{}/{}",
                    self.topic_name(existing.topic_id),
                    existing.partition,
                    existing.offset
                ))
            }
        })
    }

    /// What the state knows of `key` in `partition` (pending or stored), recording nothing:
    /// how a void finds its record, and a record the void that came first.
    pub fn peek(&mut self, partition: i32, key: u128) -> Result<Option<KnownRecord>, StateError> {
        if let Some(pending) = self.pending.get(&key) {
            return Ok(Some(KnownRecord {
                source: pending.source,
                position: Some(pending.position),
            }));
        }
        let handle = self.partition(partition)?;
        let value = handle.get(key.to_be_bytes()).map_err(self.err())?;
        Ok(value.and_then(|v| KnownRecord::from_value(&v)))
    }

    /// Forgets a pending decision whose row ClickHouse refused (it paid nothing).
    pub fn forget_pending(&mut self, key: u128) {
        self.pending.remove(&key);
    }

    /// Records, pending, that `source` was decided as something other than a unit.
    pub fn record_other(&mut self, partition: i32, source: PackedSource) {
        self.pending_others.insert((partition, source.to_bytes()));
    }

    /// Makes a durable batch's new units and marks durable in the store, in one atomic
    /// write, and drops them from the overlay. Call only after ClickHouse holds the rows.
    pub fn commit(
        &mut self,
        units: &[PendingUnit],
        others: &[OtherSource],
        marks: &[(i32, Mark)],
    ) -> Result<(), StateError> {
        self.prepare(units, others, marks)?
            .commit()
            .map_err(self.err())?;
        self.settle(units, others);
        Ok(())
    }

    /// [`LedgerState::commit`] on a shared state, holding the lock only to prepare the
    /// write and to settle the overlay, not while the store writes (~1 µs a unit): the
    /// ledger's poll loop keeps deciding meanwhile. A key is then briefly both pending and
    /// stored, with the same source, which decides the same way.
    ///
    /// `forgotten` are pending units whose rows ClickHouse refused: they leave the overlay
    /// in the same locked step that makes their sources known as decided, so no second
    /// copy of such a record can be decided new in between.
    pub fn commit_shared(
        state: &std::sync::Mutex<LedgerState>,
        forgotten: &[PendingUnit],
        units: &[PendingUnit],
        others: &[OtherSource],
        marks: &[(i32, Mark)],
    ) -> Result<(), StateError> {
        let (batch, dir) = {
            let mut guard = state.lock().expect("ledger state poisoned");
            for unit in forgotten {
                guard.forget_pending(unit.key);
            }
            (guard.prepare(units, others, marks)?, guard.dir.clone())
        };
        batch
            .commit()
            .map_err(|source| StateError::Store { dir, source })?;
        state
            .lock()
            .expect("ledger state poisoned")
            .settle(units, others);
        Ok(())
    }

    /// The one atomic store write of a commit; the other sources count as decided in the
    /// overlay from now on.
    fn prepare(
        &mut self,
        units: &[PendingUnit],
        others: &[OtherSource],
        marks: &[(i32, Mark)],
    ) -> Result<fjall::OwnedWriteBatch, StateError> {
        for other in others {
            self.pending_others
                .insert((other.partition, other.source.to_bytes()));
            if other.refused {
                self.refused_any.insert(other.partition, true);
            }
        }
        let mut batch = self.db.batch();
        // In key order per partition: the memtable's skip list inserts neighbours faster
        // than random keys, and each partition's handle is looked up once.
        let mut sorted: Vec<&PendingUnit> = units.iter().collect();
        sorted.sort_unstable_by_key(|u| (u.partition, u.key));
        let mut open: Option<(i32, Keyspace)> = None;
        for unit in sorted {
            let handle = match &open {
                Some((partition, handle)) if *partition == unit.partition => handle,
                _ => {
                    &open
                        .insert((unit.partition, self.partition(unit.partition)?))
                        .1
                }
            };
            batch.insert(
                handle,
                unit.key.to_be_bytes(),
                stored_value(unit.source, unit.position),
            );
        }
        for other in others {
            let handle = self.others_partition(other.partition)?;
            batch.insert(&handle, other.source.to_bytes(), []);
            if other.refused {
                batch.insert(&self.meta, format!("refused/{}", other.partition), []);
            }
        }
        for (partition, mark) in marks {
            batch.insert(
                &self.meta,
                format!("{MARK_PREFIX}/{partition}"),
                mark.to_bytes(),
            );
        }
        Ok(batch)
    }

    /// Drops what a commit made durable from the overlay.
    fn settle(&mut self, units: &[PendingUnit], others: &[OtherSource]) {
        for unit in units {
            self.pending.remove(&unit.key);
        }
        for other in others {
            self.pending_others
                .remove(&(other.partition, other.source.to_bytes()));
        }
    }

    /// Empties the store of one partition (it belongs to another life of the database).
    pub fn wipe(&mut self, partition: i32) -> Result<(), StateError> {
        let units = self.partition(partition)?;
        let others = self.others_partition(partition)?;
        self.partitions.remove(&partition);
        self.others.remove(&partition);
        self.refused_any.remove(&partition);
        let next = self.generation(partition)? + 1;
        let mut batch = self.db.batch();
        batch.insert(
            &self.meta,
            format!("generation/{partition}"),
            next.to_le_bytes(),
        );
        batch.remove(&self.meta, format!("{MARK_PREFIX}/{partition}"));
        batch.remove(&self.meta, format!("refused/{partition}"));
        batch.commit().map_err(self.err())?;
        self.db.delete_keyspace(units).map_err(self.err())?;
        self.db.delete_keyspace(others).map_err(self.err())?;
        Ok(())
    }

    /// Drops the overlay of a partition that moved away (its batches were drained first,
    /// so nothing of it is pending unless ClickHouse refused; it is re-decided by its owner).
    pub fn release(&mut self, partition: i32) {
        // By the partition that decided it (a void's key is owned by its record's owner).
        self.pending
            .retain(|_, pending| pending.partition != partition);
        // Duplicates decided in a batch dropped unshipped are not durable either: were they
        // kept, the partition coming back would skip their records as decided already.
        self.pending_others.retain(|(p, _)| *p != partition);
        self.partitions.remove(&partition);
        self.others.remove(&partition);
    }

    /// Units stored for the partitions open now (an estimate, for the summary).
    pub fn approximate_units_owned(&self) -> usize {
        self.partitions.values().map(|p| p.approximate_len()).sum()
    }

    /// Units decided and not yet durable.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Bytes the store takes on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(offset: u64) -> PackedSource {
        PackedSource {
            topic_id: 0,
            partition: 1,
            offset,
        }
    }

    #[test]
    fn a_released_partition_forgets_its_undurable_duplicates() {
        // Proves: a duplicate decided in a batch that was dropped unshipped (its partition
        // was revoked) is decided again as a duplicate when the partition comes back, not
        // skipped as decided already.
        let dir = tempfile::tempdir().unwrap();
        let mut state = LedgerState::open(dir.path()).unwrap();
        assert_eq!(state.topic_id("raw").unwrap(), 0);
        let unit = PendingUnit {
            partition: 3,
            key: 7,
            source: source(5),
            position: 0,
        };
        state.commit(&[unit], &[], &[]).unwrap();
        assert_eq!(
            state.check_and_record(3, 7, source(9), 0).unwrap(),
            Seen::DuplicateOf("raw/1/5".into())
        );
        state.release(3);
        assert_eq!(
            state.check_and_record(3, 7, source(9), 0).unwrap(),
            Seen::DuplicateOf("raw/1/5".into())
        );
    }

    #[test]
    fn a_directory_is_used_by_one_state_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = LedgerState::open(dir.path()).unwrap();
        assert!(matches!(
            LedgerState::open(dir.path()),
            Err(StateError::InUse { .. })
        ));
        drop(first);
        LedgerState::open(dir.path()).unwrap();
    }

    #[test]
    fn decisions_survive_a_reopen_only_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut state = LedgerState::open(dir.path()).unwrap();
            assert_eq!(state.topic_id("raw").unwrap(), 0);
            assert_eq!(
                state.check_and_record(3, 7, source(5), 0).unwrap(),
                Seen::New
            );
            assert_eq!(
                state.check_and_record(3, 8, source(6), 0).unwrap(),
                Seen::New
            );
            assert_eq!(
                state.check_and_record(3, 7, source(5), 0).unwrap(),
                Seen::SameMessage
            );
            assert_eq!(
                state.check_and_record(3, 7, source(9), 0).unwrap(),
                Seen::DuplicateOf("raw/1/5".into())
            );
            let mark = Mark {
                next_offset: 1,
                last_source: source(5),
            };
            let unit = PendingUnit {
                partition: 3,
                key: 7,
                source: source(5),
                position: 0,
            };
            // Key 11's unit row at source 12 was refused by ClickHouse: paid nothing.
            assert_eq!(
                state.check_and_record(3, 11, source(12), 0).unwrap(),
                Seen::New
            );
            state.forget_pending(11);
            let duplicate = OtherSource {
                partition: 3,
                source: source(9),
                refused: false,
            };
            let refused = OtherSource {
                source: source(12),
                refused: true,
                ..duplicate
            };
            state
                .commit(&[unit], &[duplicate, refused], &[(3, mark)])
                .unwrap();
        }
        let mut state = LedgerState::open(dir.path()).unwrap();
        assert_eq!(state.topic_name(0), "raw");
        assert_eq!(state.mark(3).unwrap().unwrap().next_offset, 1);
        // A second copy of the duplicate at offset 9 was decided already.
        assert_eq!(
            state.check_and_record(3, 7, source(9), 0).unwrap(),
            Seen::SameMessage
        );
        assert_eq!(
            state.check_and_record(3, 7, source(10), 0).unwrap(),
            Seen::DuplicateOf("raw/1/5".into())
        );
        // A second copy of the refused record is not paid; another source of key 11 is.
        assert_eq!(
            state.check_and_record(3, 11, source(12), 0).unwrap(),
            Seen::SameMessage
        );
        assert_eq!(
            state.check_and_record(3, 11, source(13), 0).unwrap(),
            Seen::New
        );
        state.forget_pending(11);
        // Key 8 was only pending: gone, as ClickHouse never got it either.
        assert_eq!(
            state.check_and_record(3, 8, source(6), 0).unwrap(),
            Seen::New
        );
        state.wipe(3).unwrap();
        assert_eq!(state.mark(3).unwrap(), None);
        state.forget_pending(8);
        assert_eq!(
            state.check_and_record(3, 7, source(9), 0).unwrap(),
            Seen::New
        );
    }
}
