//! Shared memory (only when preloaded): the worker's pid, so that commits can wake it, and the
//! progress of pushes in flight, so that any session can see them (`qobra_sync.progress`).

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

/// Pushes that can be followed at once; more still run, they just do not show.
pub const SLOTS: usize = 32;

/// One push in flight.
#[derive(Copy, Clone, Default)]
pub struct Slot {
    /// Backend pid; 0 = free.
    pub pid: i32,
    pub run_id: i64,
    pub source: u32,
    /// Start time, microseconds since the Unix epoch.
    pub started_us: i64,
    pub rows_sent: u64,
    pub bytes_sent: u64,
    pub chunks: u32,
    pub restarts: u32,
}

/// Everything qobra_sync keeps in shared memory.
#[derive(Copy, Clone, Default)]
pub struct Board {
    /// Pid of the running worker, 0 when there is none.
    pub worker_pid: i32,
    pub slots: [Slot; SLOTS],
}

unsafe impl PGRXSharedMemory for Board {}

static BOARD: PgLwLock<Board> = unsafe { PgLwLock::new(c"qobra_sync") };

/// Requests the shared memory; called from `_PG_init` while preloading.
pub fn init() {
    pg_shmem_init!(BOARD);
}

/// Records the worker's pid (0 when it exits).
pub fn set_worker_pid(pid: i32) {
    if crate::preloaded() {
        BOARD.exclusive().worker_pid = pid;
    }
}

/// The running worker's pid, if any.
pub fn worker_pid() -> Option<i32> {
    if !crate::preloaded() {
        return None;
    }
    let pid = BOARD.share().worker_pid;
    (pid != 0).then_some(pid)
}

/// Wakes the worker (sets its latch) if there is one.
pub fn wake_worker() {
    if let Some(pid) = worker_pid() {
        // SIGUSR1 runs Postgres' procsignal handler, which sets the latch.
        unsafe { libc_kill(pid, 10) };
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

/// Asks for the worker to be woken when the current transaction commits (once per transaction).
pub fn wake_worker_at_commit() {
    thread_local! {
        static ARMED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if !crate::preloaded() || ARMED.with(|a| a.replace(true)) {
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

/// A push starting in this backend: takes a progress slot (none when not preloaded or full).
pub fn progress_start(run_id: i64, source: u32) -> Option<usize> {
    if !crate::preloaded() {
        return None;
    }
    let mut board = BOARD.exclusive();
    let free = board.slots.iter().position(|s| s.pid == 0)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64;
    board.slots[free] = Slot {
        pid: unsafe { pg_sys::MyProcPid },
        run_id,
        source,
        started_us: now,
        ..Slot::default()
    };
    Some(free)
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

/// Frees a progress slot.
pub fn progress_end(slot: Option<usize>) {
    if let Some(i) = slot {
        BOARD.exclusive().slots[i] = Slot::default();
    }
}

/// The pushes in flight.
pub fn progress() -> Vec<Slot> {
    if !crate::preloaded() {
        return vec![];
    }
    BOARD
        .share()
        .slots
        .iter()
        .filter(|s| s.pid != 0)
        .copied()
        .collect()
}
