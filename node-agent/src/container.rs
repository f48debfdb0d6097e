//! Container and pod context: cgroup id → cgroup path → container id → containerd's labels.
//!
//! The kernel gives every event the cgroup v2 id of its task. We turn it into the cgroup path
//! with `open_by_handle_at` on the cgroup2 mount (kernfs file handles are cgroup ids), falling
//! back to `/proc/<pid>/cgroup`, then recognise the kubelet and containerd layouts. Labels and
//! the image come from containerd's Containers API over its gRPC socket.
//!
//! Lookups never stop events: a healthy containerd answers inline within a short deadline; after
//! a failure, events carry `metadata: unavailable` and the lookup is retried with backoff.
//! Both caches are bounded by count and by bytes (each has half the byte budget): labels, image
//! names and cgroup paths come from whoever creates the container.

use std::{
    collections::HashMap,
    ffi::CString,
    fs,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use containerd_client::{
    services::v1::{GetContainerRequest, containers_client::ContainersClient},
    tonic::{Code, Request, metadata::MetadataValue, transport::Channel},
};
use peregrine_event::{Container, MetadataState};
use tokio::sync::watch;

use crate::bounded::{BoundedLru, CacheStats, HeapBytes};

/// The default byte budget of both caches together: 4096 containers with long image names and
/// labels fit several times over.
pub const DEFAULT_MAX_BYTES: usize = 8 << 20;

pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// What a cgroup path says about its container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupContainer {
    pub id: String,
    /// containerd namespace to ask in.
    pub namespace: String,
    pub pod_uid: Option<String>,
    /// Kubelet layouts are containers whatever containerd says; a plain `/<ns>/<id>` path only
    /// if containerd knows the id.
    pub kubelet: bool,
}

fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// containerd's identifier rule: `^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$`.
fn is_containerd_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 76
        && s.split(['.', '_', '-'])
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Recognises the container in a cgroup path:
/// - cgroupfs kubelet: `/kubepods[/<qos>]/pod<uid>/<id>`;
/// - systemd kubelet: `/kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid>.slice/cri-containerd-<id>.scope`;
/// - plain containerd: `/<namespace>/<id>`;
///
/// and any cgroup below one of these: a process that can write its cgroup (cgroup
/// namespaces, delegated cgroups) may create a child and move into it, and stays in its
/// container. The outermost container segment wins: it is the runtime's, and those below it are
/// the container's own to name.
pub fn parse_cgroup_path(path: &str) -> Option<CgroupContainer> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let kubelet = segs
        .iter()
        .any(|s| *s == "kubepods" || s.starts_with("kubepods"));
    let pod_uid = segs.iter().find_map(|s| pod_uid_of(s));
    for seg in &segs {
        for prefix in ["cri-containerd-", "containerd-", "docker-", "crio-"] {
            if let Some(id) = seg
                .strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(".scope"))
                && is_hex_id(id)
            {
                return Some(CgroupContainer {
                    id: id.into(),
                    namespace: "k8s.io".into(),
                    pod_uid,
                    kubelet: true,
                });
            }
        }
        if kubelet && is_hex_id(seg) {
            return Some(CgroupContainer {
                id: (*seg).into(),
                namespace: "k8s.io".into(),
                pod_uid,
                kubelet: true,
            });
        }
    }
    if kubelet {
        return None;
    }
    const UNIT_SUFFIXES: [&str; 6] = [".slice", ".service", ".scope", ".mount", ".socket", ".swap"];
    // `/<namespace>/<id>[/...]`: checked with containerd before it counts as a container.
    match segs.as_slice() {
        [ns, id, ..]
            if is_containerd_identifier(ns)
                && is_containerd_identifier(id)
                && !segs
                    .iter()
                    .any(|s| UNIT_SUFFIXES.iter().any(|u| s.ends_with(u))) =>
        {
            Some(CgroupContainer {
                id: (*id).into(),
                namespace: (*ns).into(),
                pod_uid: None,
                kubelet: false,
            })
        }
        _ => None,
    }
}

/// `pod<uid>` (cgroupfs) or `kubepods-<qos>-pod<uid_with_underscores>.slice` (systemd).
fn pod_uid_of(seg: &str) -> Option<String> {
    let s = seg.strip_suffix(".slice").unwrap_or(seg);
    let at = s.rfind("pod")?;
    if at > 0 && !s[..at].ends_with('-') {
        return None;
    }
    let uid = &s[at + 3..];
    (!uid.is_empty()
        && uid
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_'))
    .then(|| uid.replace('_', "-"))
}

/// Finds the cgroup2 mount point in /proc/self/mountinfo.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        if post.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        pre.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// Resolves cgroup ids to paths (relative to the cgroup2 root).
pub struct CgroupPaths {
    mount: Option<(PathBuf, OwnedFd)>,
}

impl CgroupPaths {
    pub fn open() -> Self {
        let mount = cgroup2_mount().and_then(|p| {
            let c = CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
            // SAFETY: valid C string; the returned fd is checked and owned.
            let fd = unsafe {
                libc::open(
                    c.as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            };
            // SAFETY: fd is a fresh descriptor we own when non-negative.
            (fd >= 0).then(|| (p, unsafe { OwnedFd::from_raw_fd(fd) }))
        });
        CgroupPaths { mount }
    }

    /// The path of cgroup `id`, via a kernfs file handle (`FILEID_KERNFS`); needs
    /// CAP_DAC_READ_SEARCH. `None` if the cgroup is gone or the kernel refuses.
    pub fn by_id(&self, id: u64) -> Option<String> {
        let (mount, fd) = self.mount.as_ref()?;
        #[repr(C)]
        struct Handle {
            bytes: u32,
            kind: i32,
            id: u64,
        }
        const FILEID_KERNFS: i32 = 0xfe;
        let mut h = Handle {
            bytes: 8,
            kind: FILEID_KERNFS,
            id,
        };
        // SAFETY: Handle has the layout of `struct file_handle` with an 8-byte f_handle.
        let cg = unsafe {
            libc::open_by_handle_at(
                fd.as_raw_fd(),
                (&raw mut h).cast(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if cg < 0 {
            return None;
        }
        // SAFETY: fresh descriptor we own.
        let cg = unsafe { OwnedFd::from_raw_fd(cg) };
        let full = fs::read_link(format!("/proc/self/fd/{}", cg.as_raw_fd())).ok()?;
        let rel = full.strip_prefix(mount).ok()?;
        Some(format!("/{}", rel.to_string_lossy()))
    }
}

/// `0::<path>` from `/proc/<pid>/cgroup`.
pub fn cgroup_of_pid(proc_root: &Path, pid: u32) -> Option<String> {
    let s = fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
}

impl HeapBytes for CgroupContainer {
    fn heap_bytes(&self) -> usize {
        self.id.heap_bytes() + self.namespace.heap_bytes() + self.pod_uid.heap_bytes()
    }
}

#[derive(Clone, Debug)]
struct Meta {
    container: Arc<Container>,
    retry_at: Option<Instant>,
}

struct ContainerBytes<'a>(&'a Container);

impl HeapBytes for ContainerBytes<'_> {
    fn heap_bytes(&self) -> usize {
        let c = self.0;
        c.id.heap_bytes()
            + c.runtime.heap_bytes()
            + c.name.heap_bytes()
            + c.image.heap_bytes()
            + c.pod_name.heap_bytes()
            + c.pod_namespace.heap_bytes()
            + c.pod_uid.heap_bytes()
            + c.namespace.heap_bytes()
    }
}

impl HeapBytes for Meta {
    fn heap_bytes(&self) -> usize {
        // The Arc's counts and its Container, then what the Container owns.
        2 * std::mem::size_of::<usize>()
            + std::mem::size_of::<Container>()
            + ContainerBytes(&self.container).heap_bytes()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("containerd socket {path}: {source}")]
    Connect {
        path: String,
        source: containerd_client::tonic::transport::Error,
    },
    #[error("containerd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("containerd: {0}")]
    Rpc(#[from] containerd_client::tonic::Status),
    #[error("invalid containerd namespace {0:?}")]
    Namespace(String),
}

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Resolves containers for events. Cheap to clone: clones share the caches, so the ring-buffer
/// reader can start a lookup the moment a container's cgroup appears while enrichment, which
/// runs behind it, waits for that same lookup instead of starting another.
#[derive(Clone)]
pub struct ContainerResolver {
    shared: Arc<Shared>,
}

struct Shared {
    socket: PathBuf,
    deadline: Duration,
    paths: CgroupPaths,
    proc_root: PathBuf,
    capacity: usize,
    state: Mutex<State>,
}

struct State {
    by_cgroup: BoundedLru<u64, Option<Arc<CgroupContainer>>>,
    meta: BoundedLru<String, Meta>,
    /// Lookups under way, by container id; waiters watch for the answer.
    inflight: HashMap<String, watch::Receiver<Option<Arc<Container>>>>,
    channel: Option<Channel>,
    healthy: bool,
    backoff: Duration,
    health_retry_at: Option<Instant>,
    lookups_failed: u64,
}

impl ContainerResolver {
    /// `capacity` entries in each cache, `max_bytes` for both together.
    pub fn new(socket: PathBuf, capacity: usize, max_bytes: usize, deadline: Duration) -> Self {
        let cap = capacity.max(1);
        ContainerResolver {
            shared: Arc::new(Shared {
                socket,
                deadline,
                paths: CgroupPaths::open(),
                proc_root: PathBuf::from("/proc"),
                capacity: cap,
                state: Mutex::new(State {
                    by_cgroup: BoundedLru::new(cap, max_bytes / 2),
                    meta: BoundedLru::new(cap, max_bytes - max_bytes / 2),
                    inflight: HashMap::new(),
                    channel: None,
                    healthy: true,
                    backoff: MIN_BACKOFF,
                    health_retry_at: None,
                    lookups_failed: 0,
                }),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the caches inconsistent (each update is a
        // single insert), so a poisoned lock is still usable.
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    pub fn cgroup_cache_len(&self) -> usize {
        self.state().by_cgroup.len()
    }

    pub fn metadata_cache_len(&self) -> usize {
        self.state().meta.len()
    }

    /// The cgroup cache's and the metadata cache's accounting.
    pub fn cache_stats(&self) -> (CacheStats, CacheStats) {
        let st = self.state();
        (st.by_cgroup.stats(), st.meta.stats())
    }

    pub fn lookups_failed(&self) -> u64 {
        self.state().lookups_failed
    }

    /// A cgroup was created: remember its path and, if it is a container's, start asking
    /// containerd now, while the container certainly exists. Returns at once.
    pub fn on_cgroup_created(&self, cgroup_id: u64, path: &str) {
        let cg = parse_cgroup_path(path).map(Arc::new);
        self.state().by_cgroup.put(cgroup_id, cg.clone());
        if let Some(cg) = cg {
            let me = self.clone();
            tokio::spawn(async move {
                me.metadata(&cg).await;
            });
        }
    }

    /// A cgroup was removed: its processes have all exited, so its entries can go.
    pub fn on_cgroup_removed(&self, cgroup_id: u64) {
        let mut st = self.state();
        if let Some(Some(cg)) = st.by_cgroup.pop(&cgroup_id) {
            st.meta.pop(&cg.id);
        }
    }

    /// Container of cgroup `cgroup_id` (as seen by process `pid`), or `None` on the host.
    pub async fn resolve(&self, cgroup_id: u64, pid: u32) -> Option<Arc<Container>> {
        let cached = self.state().by_cgroup.get(&cgroup_id).cloned();
        let cg = match cached {
            Some(c) => c,
            None => {
                let path = self
                    .shared
                    .paths
                    .by_id(cgroup_id)
                    .or_else(|| cgroup_of_pid(&self.shared.proc_root, pid))?;
                let c = parse_cgroup_path(&path).map(Arc::new);
                self.state().by_cgroup.put(cgroup_id, c.clone());
                c
            }
        }?;
        let container = self.metadata(&cg).await;
        if container.metadata == MetadataState::NotFound && !cg.kubelet {
            // A plain two-level path that containerd does not know is not a container.
            return None;
        }
        Some(container)
    }

    async fn metadata(&self, cg: &CgroupContainer) -> Arc<Container> {
        let now = Instant::now();
        let (tx, wait) = {
            let mut st = self.state();
            if let Some(m) = st.meta.get(&cg.id)
                && m.retry_at.is_none_or(|t| now < t)
            {
                return m.container.clone();
            }
            if let Some(rx) = st.inflight.get(&cg.id) {
                (None, Some(rx.clone()))
            } else if !st.healthy && st.health_retry_at.is_some_and(|t| now < t) {
                let retry_at = st.health_retry_at;
                return remember(&mut st, cg, unavailable(cg), retry_at);
            } else {
                let (tx, rx) = watch::channel(None);
                st.inflight.insert(cg.id.clone(), rx);
                (Some(tx), None)
            }
        };
        if let Some(mut rx) = wait {
            // Someone else is asking: wait for their answer (they are bounded by the deadline).
            let answered =
                tokio::time::timeout(self.shared.deadline * 2, rx.wait_for(Option::is_some)).await;
            if let Ok(Ok(c)) = answered
                && let Some(c) = c.clone()
            {
                return c;
            }
            return Arc::new(unavailable(cg));
        }
        let result = self.lookup(cg).await;
        let mut st = self.state();
        let c = match result {
            Ok(c) => {
                st.healthy = true;
                st.backoff = MIN_BACKOFF;
                remember(&mut st, cg, c, None)
            }
            Err(e) => {
                st.lookups_failed += 1;
                tracing::warn!(container = %cg.id, error = %e, retry_in = ?st.backoff, "container metadata unavailable");
                st.healthy = false;
                st.channel = None;
                st.health_retry_at = Some(now + st.backoff);
                st.backoff = (st.backoff * 2).min(MAX_BACKOFF);
                let retry_at = st.health_retry_at;
                remember(&mut st, cg, unavailable(cg), retry_at)
            }
        };
        st.inflight.remove(&cg.id);
        if let Some(tx) = tx {
            let _ = tx.send(Some(c.clone()));
        }
        c
    }

    async fn channel(&self) -> Result<Channel, LookupError> {
        if let Some(c) = self.state().channel.clone() {
            return Ok(c);
        }
        let c = containerd_client::connect(&self.shared.socket)
            .await
            .map_err(|source| LookupError::Connect {
                path: self.shared.socket.display().to_string(),
                source,
            })?;
        self.state().channel = Some(c.clone());
        Ok(c)
    }

    async fn lookup(&self, cg: &CgroupContainer) -> Result<Container, LookupError> {
        let deadline = self.shared.deadline;
        let fut = async {
            let channel = self.channel().await?;
            let mut req = Request::new(GetContainerRequest { id: cg.id.clone() });
            let ns: MetadataValue<_> = cg
                .namespace
                .parse()
                .map_err(|_| LookupError::Namespace(cg.namespace.clone()))?;
            req.metadata_mut().insert("containerd-namespace", ns);
            match ContainersClient::new(channel).get(req).await {
                Ok(resp) => Ok(Some(resp.into_inner().container)),
                Err(s) if s.code() == Code::NotFound => Ok(None),
                Err(s) => Err(LookupError::Rpc(s)),
            }
        };
        let found = tokio::time::timeout(deadline, fut)
            .await
            .map_err(|_| LookupError::Timeout(deadline))??;
        let mut c = Container {
            metadata: MetadataState::NotFound,
            ..unavailable(cg)
        };
        if let Some(Some(info)) = found {
            let label = |k: &str| info.labels.get(k).filter(|v| !v.is_empty()).cloned();
            c.name = label(LABEL_CONTAINER_NAME);
            c.pod_name = label(LABEL_POD_NAME);
            c.pod_namespace = label(LABEL_POD_NAMESPACE);
            c.pod_uid = label(LABEL_POD_UID).or(c.pod_uid);
            c.image = (!info.image.is_empty()).then_some(info.image);
            c.metadata = MetadataState::Complete;
        }
        Ok(c)
    }
}

fn unavailable(cg: &CgroupContainer) -> Container {
    Container {
        id: cg.id.clone(),
        runtime: "containerd".into(),
        pod_uid: cg.pod_uid.clone(),
        namespace: Some(cg.namespace.clone()),
        metadata: MetadataState::Unavailable,
        ..Container::default()
    }
}

fn remember(
    st: &mut State,
    cg: &CgroupContainer,
    c: Container,
    retry_at: Option<Instant>,
) -> Arc<Container> {
    let c = Arc::new(c);
    st.meta.put(
        cg.id.clone(),
        Meta {
            container: c.clone(),
            retry_at,
        },
    );
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "c0ffee00000000000000000000000000000000000000000000000000000000aa";

    #[test]
    fn kubelet_cgroupfs_layout() {
        let c = parse_cgroup_path(&format!("/kubepods/besteffort/pod1234-abcd/{ID}")).unwrap();
        assert_eq!(c.id, ID);
        assert_eq!(c.namespace, "k8s.io");
        assert_eq!(c.pod_uid.as_deref(), Some("1234-abcd"));
        assert!(c.kubelet);
        // Guaranteed QoS has no QoS level.
        let c = parse_cgroup_path(&format!("/kubepods/pod99/{ID}")).unwrap();
        assert_eq!(c.pod_uid.as_deref(), Some("99"));
    }

    #[test]
    fn kubelet_systemd_layout() {
        let p = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12ab_34cd.slice/cri-containerd-{ID}.scope"
        );
        let c = parse_cgroup_path(&p).unwrap();
        assert_eq!(c.id, ID);
        assert_eq!(c.pod_uid.as_deref(), Some("12ab-34cd"));
    }

    #[test]
    fn a_child_cgroup_stays_in_its_container() {
        let c =
            parse_cgroup_path(&format!("/kubepods/besteffort/pod1234-abcd/{ID}/escape")).unwrap();
        assert_eq!(
            (c.id.as_str(), c.pod_uid.as_deref()),
            (ID, Some("1234-abcd"))
        );
        // A child named like another container does not take its place.
        let other = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
        let c = parse_cgroup_path(&format!("/kubepods/pod99/{ID}/{other}/x")).unwrap();
        assert_eq!(c.id, ID);
        let p = format!("/kubepods.slice/kubepods-pod12ab.slice/cri-containerd-{ID}.scope/a/b");
        assert_eq!(parse_cgroup_path(&p).unwrap().id, ID);
        let c = parse_cgroup_path("/default/my-app/child").unwrap();
        assert_eq!((c.namespace.as_str(), c.id.as_str()), ("default", "my-app"));
    }

    #[test]
    fn plain_containerd_layout() {
        let c = parse_cgroup_path("/default/my-app").unwrap();
        assert_eq!(
            (c.namespace.as_str(), c.id.as_str(), c.kubelet),
            ("default", "my-app", false)
        );
    }

    #[test]
    fn host_paths_are_not_containers() {
        for p in [
            "/",
            "/system.slice/ssh.service",
            "/user.slice/user-0.slice",
            "/kubepods/besteffort/pod1",
            "/kubepods/besteffort/pod1/not-an-id",
            "/system.slice/containerd.service/x",
            "/init.scope",
        ] {
            assert_eq!(parse_cgroup_path(p), None, "{p}");
        }
    }

    #[test]
    fn large_labels_and_paths_evict_by_bytes_and_the_count_matches_the_contents() {
        let budget = 128 << 10;
        let r = ContainerResolver::new("/nonexistent".into(), 4096, budget, Duration::from_secs(1));
        for i in 0..100u64 {
            let cg = CgroupContainer {
                id: format!("{i:064x}"),
                namespace: "k8s.io".into(),
                pod_uid: Some("u".repeat(4096)),
                kubelet: true,
            };
            let mut st = r.state();
            st.by_cgroup.put(i, Some(Arc::new(cg.clone())));
            let c = Container {
                name: Some("n".repeat(4096)),
                image: Some(format!("registry.example/{}:{i}", "i".repeat(4096))),
                pod_name: Some("p".repeat(4096)),
                metadata: MetadataState::Complete,
                ..unavailable(&cg)
            };
            remember(&mut st, &cg, c, None);
            assert_eq!(st.by_cgroup.bytes(), st.by_cgroup.recount());
            assert_eq!(st.meta.bytes(), st.meta.recount());
        }
        let (cgroups, meta) = r.cache_stats();
        assert!(cgroups.bytes + meta.bytes <= budget);
        assert!(cgroups.evictions.bytes > 50, "{cgroups:?}");
        assert!(meta.evictions.bytes > 80, "{meta:?}");
        assert_eq!((cgroups.evictions.count, meta.evictions.count), (0, 0));
        assert_eq!(meta.entries, r.metadata_cache_len());
        // Removal keeps the count exact.
        let ids: Vec<u64> = r.state().by_cgroup.iter().map(|(k, _)| *k).collect();
        for id in ids {
            r.on_cgroup_removed(id);
        }
        let (cgroups, meta) = r.cache_stats();
        assert_eq!(cgroups.bytes, 0);
        assert_eq!(meta.bytes, r.state().meta.recount());
    }

    #[test]
    fn resolves_our_own_cgroup_by_id() {
        use std::os::unix::fs::MetadataExt;
        let Some(mount) = cgroup2_mount() else {
            panic!("no cgroup2 mount on this host")
        };
        let own = cgroup_of_pid(Path::new("/proc"), std::process::id()).unwrap();
        let dir = mount.join(own.trim_start_matches('/'));
        let id = fs::metadata(&dir).unwrap().ino();
        assert_eq!(CgroupPaths::open().by_id(id).as_deref(), Some(own.as_str()));
    }
}
