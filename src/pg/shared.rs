//! Shared memory (only when preloaded): each database's worker's pid, so that commits can wake
//! it, and whether it died connecting to its database; the progress of pushes in flight, so that any
//! session can see them (`qobra_sync.progress`); and each push's run row until its transaction
//! ends, so that the worker can record a run a rollback took away (see `orphans`).

use crate::pg::error::{Error, Result, SqlState};
use crate::pg::gucs::{MAX_DATABASES, MAX_PUSHES_LIMIT};
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};
use qobra_sync_core::error::quoted;
use qobra_sync_core::names::setting::MAX_PUSHES;

/// Every slot: the most `qobra_sync.max_pushes` lets sessions hold, and one for each database's
/// worker, which never waits for one.
pub const SLOTS: usize = MAX_PUSHES_LIMIT + MAX_DATABASES;

/// Bytes kept of a run's row (JSON) in a slot; a longer row is cut down to fit (see `orphans`).
pub const RECORD_BYTES: usize = 4096;

/// Where a push in flight is.
#[derive(Copy, Clone, Default, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Checking and reading: nothing sent yet.
    #[default]
    Checking,
    /// Sending: Qobra may hold a partial table until the push ends.
    Sending,
    /// Ended; the slot is kept until the session's transaction ends.
    Ended,
}

/// Who runs a push, as the slots count them.
#[derive(Copy, Clone, Default, Debug, PartialEq, Eq)]
pub enum Pusher {
    /// A database's worker.
    #[default]
    Worker,
    /// A session (`sync_now`), as its login role (`SET ROLE` does not make another).
    Session { role: u32 },
}

/// One push in flight.
#[derive(Copy, Clone, Default)]
pub struct Slot {
    /// Backend pid; 0 = free.
    pub pid: i32,
    /// Who pushes: a session (its login role) or a worker.
    pub pusher: Pusher,
    /// The registration's owner when the push started: who may see it in `progress`.
    pub owner: u32,
    /// The database the push runs in (its OID): only that database's views and worker see it.
    pub database: u32,
    pub run_id: i64,
    pub source: u32,
    /// Start time, microseconds since the Unix epoch.
    pub started_us: i64,
    pub rows_sent: u64,
    pub bytes_sent: u64,
    pub chunks: u32,
    pub restarts: u32,
    pub phase: Phase,
    /// The session's transaction rolled back and took the run's row with it: the worker
    /// records the run from this slot, then frees it.
    pub orphaned: bool,
    /// The run's row as JSON: its start, then its outcome once ended.
    pub record: Record,
}

/// A run's row as JSON text, in a fixed buffer.
#[derive(Copy, Clone)]
pub struct Record {
    len: u16,
    bytes: [u8; RECORD_BYTES],
}

impl Default for Record {
    /// No row.
    fn default() -> Self {
        Record {
            len: 0,
            bytes: [0; RECORD_BYTES],
        }
    }
}

impl Record {
    /// A record of `text`, or None when it does not fit.
    pub fn new(text: &str) -> Option<Record> {
        let mut record = Record::default();
        record
            .bytes
            .get_mut(..text.len())?
            .copy_from_slice(text.as_bytes());
        record.len = text.len() as u16;
        Some(record)
    }

    /// The JSON text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }
}

/// The worker of one database of `qobra_sync.database_name` (by its position in the list).
#[derive(Copy, Clone, Default)]
pub struct Worker {
    /// Pid of the running worker, 0 when there is none.
    pub pid: i32,
    /// The OID of the database it connected to (0 before it first did): how a backend finds
    /// its own database's worker without reading the catalog (it may have to at commit or
    /// abort, where the catalog cannot be read).
    pub database: u32,
    /// The worker set out to connect to its database and has not arrived (it died connecting:
    /// the database does not exist yet, most likely).
    pub connecting: bool,
}

/// Everything qobra_sync keeps in shared memory.
#[derive(Copy, Clone)]
pub struct Board {
    pub workers: [Worker; MAX_DATABASES],
    pub slots: [Slot; SLOTS],
}

impl Default for Board {
    /// No worker, every slot free.
    fn default() -> Self {
        Board {
            workers: [Worker::default(); MAX_DATABASES],
            slots: [Slot::default(); SLOTS],
        }
    }
}

// SAFETY: Board is Copy plain data (integers, bools, fixed-size arrays and enums), with no pointer,
// so it means the same in every process that maps it; it is only reached through BOARD's LWLock.
unsafe impl PGRXSharedMemory for Board {}

// SAFETY: "qobra_sync" names no other shared-memory lock of this library, and pg_shmem_init! sets
// it up (`init`) before any use.
static BOARD: PgLwLock<Board> = unsafe { PgLwLock::new(c"qobra_sync") };

/// Requests the shared memory; called from `_PG_init` while preloading.
pub fn init() {
    pg_shmem_init!(BOARD);
}

/// Records the pid of worker `worker` and the database it is connected to (pid 0 when it
/// exits).
pub fn set_worker_pid(worker: usize, pid: i32) {
    if super::lifecycle::preloaded() && worker < MAX_DATABASES {
        let mut board = BOARD.exclusive();
        board.workers[worker].pid = pid;
        if pid != 0 {
            // SAFETY: a plain read of the backend's database OID.
            board.workers[worker].database = unsafe { pg_sys::MyDatabaseId }.to_u32();
        }
    }
}

/// Says that worker `worker` is connecting to its database (true) or has connected (false);
/// returns what was said before.
pub fn set_connecting(worker: usize, connecting: bool) -> bool {
    let mut board = BOARD.exclusive();
    board
        .workers
        .get_mut(worker)
        .is_some_and(|w| std::mem::replace(&mut w.connecting, connecting))
}

/// The pid of the current database's worker, if it runs.
fn worker_pid() -> Option<i32> {
    if !super::lifecycle::preloaded() {
        return None;
    }
    // SAFETY: a plain read of the backend's database OID, set once at connection.
    let here = unsafe { pg_sys::MyDatabaseId }.to_u32();
    BOARD
        .share()
        .workers
        .iter()
        .find(|w| w.database == here && w.pid != 0)
        .map(|w| w.pid)
}

/// Whether `qobra_sync.database_name` lists the current database, so that a worker records
/// the runs a rollback takes away here (it may not have connected yet). Reads the catalog:
/// call it inside a transaction.
pub fn database_served() -> bool {
    super::lifecycle::preloaded()
        && crate::pg::gucs::databases().contains(&crate::pg::catalog::current_database())
}

/// Wakes the current database's worker (sets its latch) if there is one.
pub fn wake_worker() {
    if let Some(pid) = worker_pid() {
        // SIGUSR1 runs Postgres' procsignal handler, which sets the latch.
        // SAFETY: kill touches no memory of ours; the pid is one a worker published and clears
        // before it exits (`bgworker::forget_pid`).
        unsafe { libc::kill(pid, libc::SIGUSR1) };
    }
}

/// Asks for the worker to be woken when the current transaction commits (once per transaction).
pub fn wake_worker_at_commit() {
    thread_local! {
        static ARMED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if !super::lifecycle::preloaded() || ARMED.with(|a| a.replace(true)) {
        return;
    }
    pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, || {
        ARMED.with(|a| a.set(false));
        wake_worker();
    });
    pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Abort, || {
        ARMED.with(|a| a.set(false))
    });
}

/// A push starting in this backend: takes a slot, or None when the library is not preloaded.
/// A session's push is refused, before it sends anything, when sessions hold
/// `qobra_sync.max_pushes` slots, its role a quarter of them or its database half: its run could not be
/// recorded if its transaction rolled back. A worker always finds one.
pub fn progress_start(
    run_id: i64,
    source: u32,
    owner: u32,
    record: Record,
    pusher: Pusher,
) -> Result<Option<usize>> {
    if !super::lifecycle::preloaded() {
        return Ok(None);
    }
    // SAFETY: a plain read of the backend's database OID, set once at connection.
    let database = unsafe { pg_sys::MyDatabaseId }.to_u32();
    let mut board = BOARD.exclusive();
    if let Pusher::Session { role } = pusher {
        if let Some(limit) = session_limit(&board.slots, role, database) {
            drop(board);
            return Err(full(limit, role));
        }
    }
    let free = board
        .slots
        .iter()
        .position(|s| s.pid == 0)
        .ok_or_else(|| Error::internal("no free slot for a worker"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64;
    board.slots[free] = Slot {
        // SAFETY: a plain read of this process's pid.
        pid: unsafe { pg_sys::MyProcPid },
        pusher,
        owner,
        database,
        run_id,
        source,
        started_us: now,
        record,
        ..Slot::default()
    };
    Ok(Some(free))
}

/// A limit on the slots of sessions, reached.
enum Limit {
    /// `qobra_sync.max_pushes` in the cluster.
    Cluster(usize),
    /// A quarter of it held by the role.
    Role(usize),
    /// Half of it held by the database.
    Database(usize),
}

/// Which limit of sessions' slots a new push of `role` in `database` would pass, if any.
fn session_limit(slots: &[Slot], role: u32, database: u32) -> Option<Limit> {
    let max = crate::pg::gucs::MAX_PUSHES.get().max(4) as usize;
    let sessions: Vec<&Slot> = slots
        .iter()
        .filter(|s| s.pid != 0 && s.pusher != Pusher::Worker)
        .collect();
    let of_role = sessions
        .iter()
        .filter(|s| s.pusher == Pusher::Session { role })
        .count();
    let of_database = sessions.iter().filter(|s| s.database == database).count();
    if sessions.len() >= max {
        Some(Limit::Cluster(max))
    } else if of_role >= max / 4 {
        Some(Limit::Role(of_role))
    } else if of_database >= max / 2 {
        Some(Limit::Database(of_database))
    } else {
        None
    }
}

/// The error of a push of `role` refused for want of a slot.
fn full(limit: Limit, role: u32) -> Error {
    let why = match limit {
        Limit::Cluster(max) => format!("{max} pushes of sessions are in flight in the cluster"),
        Limit::Role(n) => format!(
            "role {} holds {n} slots, a quarter of {MAX_PUSHES}",
            quoted(&crate::pg::roles::role_name(pg_sys::Oid::from(role)))
        ),
        Limit::Database(n) => {
            format!("this database holds {n} slots, half of {MAX_PUSHES}")
        }
    };
    Error::new(
        SqlState::ConfigurationLimitExceeded,
        format!("too many pushes in flight: {why}"),
    )
    .detail("A push of a session holds a slot until its transaction ends, so that its run is recorded even if the transaction rolls back; nothing was sent.")
    .hint(format!("Commit between pushes (each sync_now() keeps its slot until the transaction ends), wait for other pushes to end, or raise {MAX_PUSHES}."))
}

/// Applies `change` to slot `i` if it still holds run `run_id` of this backend.
pub fn with_slot(i: usize, run_id: i64, change: impl FnOnce(&mut Slot)) {
    let mut board = BOARD.exclusive();
    let s = &mut board.slots[i];
    // SAFETY: a plain read of this process's pid.
    if s.run_id == run_id && s.pid == unsafe { pg_sys::MyProcPid } {
        change(s);
    }
}

/// Marks a push as sending: from its first request on, Qobra may hold a partial table.
pub fn progress_sending(slot: Option<usize>) {
    if let Some(i) = slot {
        BOARD.exclusive().slots[i].phase = Phase::Sending;
    }
}

/// Updates a progress slot after an accepted chunk.
pub fn progress_update(
    slot: Option<usize>,
    rows_sent: u64,
    bytes_sent: u64,
    chunks: u32,
    restarts: u32,
) {
    if let Some(i) = slot {
        let mut board = BOARD.exclusive();
        let s = &mut board.slots[i];
        s.rows_sent = rows_sent;
        s.bytes_sent = bytes_sent;
        s.chunks = chunks;
        s.restarts = restarts;
    }
}

/// The pushes in flight in the current database (not those ended or orphaned).
pub fn progress() -> Vec<Slot> {
    slots(|s| s.phase != Phase::Ended && !s.orphaned)
        .into_iter()
        .map(|(_, s)| s)
        .collect()
}

/// Runs of the current database whose session rolled back their row, with their slot index,
/// for its worker to record.
pub fn orphans() -> Vec<(usize, Slot)> {
    slots(|s| s.orphaned)
}

/// Copies of the orphaned slots of other databases than the current one, with their index.
pub fn orphans_elsewhere() -> Vec<(usize, Slot)> {
    // SAFETY: a plain read of the backend's database OID, set once at connection.
    let here = unsafe { pg_sys::MyDatabaseId }.to_u32();
    taken(|s| s.orphaned && s.database != here)
}

/// Frees slot `i` if it still holds run `run_id`.
pub fn free(i: usize, run_id: i64) {
    let mut board = BOARD.exclusive();
    if board.slots[i].pid != 0 && board.slots[i].run_id == run_id {
        board.slots[i] = Slot::default();
    }
}

/// Copies of the taken slots of the current database that satisfy `wanted`, with their index.
fn slots(wanted: impl Fn(&Slot) -> bool) -> Vec<(usize, Slot)> {
    // SAFETY: a plain read of the backend's database OID, set once at connection.
    let here = unsafe { pg_sys::MyDatabaseId }.to_u32();
    taken(|s| s.database == here && wanted(s))
}

/// Copies of the taken slots, of any database, that satisfy `wanted`, with their index.
fn taken(wanted: impl Fn(&Slot) -> bool) -> Vec<(usize, Slot)> {
    if !super::lifecycle::preloaded() {
        return vec![];
    }
    BOARD
        .share()
        .slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.pid != 0 && wanted(s))
        .map(|(i, s)| (i, *s))
        .collect()
}
