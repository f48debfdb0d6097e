//! Enrichment: a decoded kernel event becomes a [`peregrine_event::Event`] with its process
//! (from the process table, with lineage and executable hash) and its container and pod.

use std::{sync::Arc, time::Duration};

use node_agent_common::{Kind, TRUNC_ARGV};
use peregrine_event::{Container, Detail, Event, LossInfo};

use crate::{
    container::ContainerResolver,
    decode::{self, RawBody, RawEvent},
    exehash::{ExeId, HashCache},
    newbin::NewBinaryTracker,
    proctable::ProcessTable,
};

#[derive(Clone, Debug)]
pub struct EnrichConfig {
    pub process_table_size: usize,
    pub process_table_bytes: usize,
    pub lineage_depth: usize,
    pub container_cache_size: usize,
    pub container_cache_bytes: usize,
    pub containerd_socket: std::path::PathBuf,
    pub containerd_timeout: Duration,
    pub hash_cache_size: usize,
    /// Executables larger than this are not hashed.
    pub hash_max_bytes: u64,
    pub new_binary_cache_size: usize,
    pub new_binary_cache_bytes: usize,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            process_table_size: 32768,
            process_table_bytes: crate::proctable::DEFAULT_MAX_BYTES,
            lineage_depth: 8,
            container_cache_size: 4096,
            container_cache_bytes: crate::container::DEFAULT_MAX_BYTES,
            containerd_socket: crate::container::DEFAULT_SOCKET.into(),
            containerd_timeout: Duration::from_millis(500),
            hash_cache_size: 4096,
            hash_max_bytes: 256 << 20,
            new_binary_cache_size: 16384,
            new_binary_cache_bytes: crate::newbin::DEFAULT_MAX_BYTES,
        }
    }
}

pub struct Enricher {
    pub procs: ProcessTable,
    pub containers: ContainerResolver,
    pub hashes: HashCache,
    pub newbin: NewBinaryTracker,
    /// A recently active process per mount namespace, to open a file as that namespace sees it.
    ns_peers: lru::LruCache<u32, u32>,
    own_mnt_ns: u32,
    cfg: EnrichConfig,
}

impl Enricher {
    pub fn new(cfg: EnrichConfig) -> Self {
        let mut procs = ProcessTable::new(
            cfg.process_table_size,
            cfg.process_table_bytes,
            cfg.lineage_depth,
        );
        procs.seed();
        Enricher {
            procs,
            containers: ContainerResolver::new(
                cfg.containerd_socket.clone(),
                cfg.container_cache_size,
                cfg.container_cache_bytes,
                cfg.containerd_timeout,
            ),
            hashes: HashCache::new(cfg.hash_cache_size, cfg.hash_max_bytes),
            newbin: NewBinaryTracker::new(cfg.new_binary_cache_size, cfg.new_binary_cache_bytes),
            ns_peers: lru::LruCache::new(
                std::num::NonZeroUsize::new(1024).unwrap_or(std::num::NonZeroUsize::MIN),
            ),
            own_mnt_ns: crate::proctable::own_mnt_ns(),
            cfg,
        }
    }

    pub fn config(&self) -> &EnrichConfig {
        &self.cfg
    }

    /// The enriched event, or `None` for the agent's internal records (cgroup lifecycle).
    pub async fn enrich(&mut self, raw: RawEvent) -> Option<Event> {
        let h = raw.header;
        let kind = raw.kind();
        if let RawBody::Cgroup {
            id, created: false, ..
        } = &raw.body
        {
            self.containers.on_cgroup_removed(*id);
            return None;
        }
        if let RawBody::Cgroup { .. } = &raw.body {
            // Creation was handled by the ring-buffer reader, ahead of the queue.
            return None;
        }
        let key = self.procs.observe(&h);
        if kind != Kind::Exit {
            self.ns_peers.put(h.mnt_ns, h.tgid);
        }
        let container: Option<Arc<Container>> = self.containers.resolve(h.cgroup_id, h.tgid).await;
        let time = self.procs.clock.wall(h.ktime_ns);
        let detail = match raw.body {
            RawBody::Exec(x) => {
                self.procs.on_exec(key, &x, h.flags & TRUNC_ARGV != 0);
                let id = ExeId::of_exec(&x);
                let peer = self.ns_peers.get(&h.mnt_ns).copied();
                // Never waits: a hash not yet known is computed in the background and carried
                // by this process's later events (below) and by later execs of the file.
                let sha = self
                    .hashes
                    .lookup(id, h.tgid, &x.exe, peer, h.mnt_ns == self.own_mnt_ns);
                self.procs.set_sha256(key, sha);
                let new_binary = container.as_ref().and_then(|c| {
                    self.newbin
                        .check_exec(&c.id, h.mnt_ns, &x.exe, x.exe_dev, x.exe_ino, h.flags)
                });
                decode::process::exec_detail(x, h.flags, new_binary)
            }
            RawBody::Fork {
                child_tgid,
                child_start_boottime_ns,
            } => {
                let child = self.procs.on_fork(key, child_tgid, child_start_boottime_ns);
                decode::process::fork_detail(child_tgid, self.procs.uuid(child))
            }
            RawBody::Exit { exit_code } => {
                self.procs.on_exit(key);
                decode::process::exit_detail(exit_code)
            }
            RawBody::File(f) => {
                if let (Some(c), Some(e)) = (&container, self.procs.get(&key)) {
                    let by = self.procs.ancestor(e);
                    self.newbin.on_file(kind, &f, &c.id, h.mnt_ns, by, time);
                }
                decode::file::detail(kind, h.flags, f)
            }
            RawBody::Detail(d) => d,
            RawBody::Cgroup { .. } => return None,
        };
        if let Some(e) = self.procs.get(&key)
            && e.sha256.is_none()
            && let Some(id) = e.exe_id
            && let Some(h) = self.hashes.cached(id)
        {
            self.procs.set_sha256(key, Some(h));
        }
        Some(Event {
            kind,
            time,
            tid: h.tid,
            process: self.procs.process(&key),
            container,
            detail,
        })
    }

    /// A Loss event, attributed to the agent's own process.
    pub fn loss_event(&mut self, loss: LossInfo) -> Event {
        let me = std::process::id();
        let key = self
            .procs
            .get_by_pid(me)
            .unwrap_or(crate::proctable::ProcKey {
                tgid: me,
                start_ticks: 0,
            });
        Event {
            kind: Kind::Loss,
            time: peregrine_event::Timestamp::now(),
            tid: me,
            process: self.procs.process(&key),
            container: None,
            detail: Detail::Loss(loss),
        }
    }
}
