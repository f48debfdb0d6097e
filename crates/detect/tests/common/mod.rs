//! Small event constructors for table-driven rule tests.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use peregrine_detect::{Catalog, Engine, Match, O_APPEND, O_CREAT, O_RDWR, O_TRUNC, O_WRONLY};
use peregrine_event::{
    Ancestor, Container, Detail, Event, ExecInfo, Family, FileInfo, Kind, MetadataState, NetInfo,
    NewBinary, NewBinaryEvidence, Process, Timestamp,
};

pub const T0: i64 = 1_764_000_000_000_000_000;
pub const O_RDONLY: u32 = 0;
pub const WRITE: u32 = O_WRONLY | O_CREAT | O_TRUNC;
pub const APPEND: u32 = O_WRONLY | O_APPEND;
pub const RDWR: u32 = O_RDWR;
pub const CONTAINER_ID: &str = "4f1c9e7d2a3b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5";

/// An event under construction.
#[derive(Clone, Debug)]
pub struct E(pub Event);

fn base(kind: Kind) -> Event {
    Event {
        kind,
        time: Timestamp::from_unix_nanos(T0),
        tid: 4242,
        process: Arc::new(Process {
            pid: 4242,
            ppid: 4200,
            uid: 1000,
            euid: 1000,
            gid: 1000,
            comm: "app".into(),
            exe: "/usr/local/bin/app".into(),
            argv: vec!["app".into()],
            cwd: "/srv".into(),
            start_time: Timestamp::from_unix_nanos(T0 - 60_000_000_000),
            lineage: vec![
                ancestor("/bin/sh", 4200),
                ancestor("/usr/bin/containerd-shim-runc-v2", 1),
            ],
            ..Process::default()
        }),
        container: Some(Arc::new(container())),
        detail: Detail::empty(kind).expect("an emitted kind"),
    }
}

pub fn ancestor(exe: &str, pid: u32) -> Ancestor {
    Ancestor {
        pid,
        exe: exe.into(),
        comm: exe
            .rsplit('/')
            .next()
            .unwrap_or(exe)
            .chars()
            .take(15)
            .collect(),
        start_time: Timestamp::from_unix_nanos(T0 - 120_000_000_000),
        ..Ancestor::default()
    }
}

pub fn container() -> Container {
    Container {
        id: CONTAINER_ID.into(),
        runtime: "containerd".into(),
        name: Some("web".into()),
        image: Some("public.ecr.aws/nginx/nginx:1.27".into()),
        pod_name: Some("web-1".into()),
        pod_namespace: Some("default".into()),
        pod_uid: Some("8d6b5b4c-1f0e-4a7c-9a51-2f1e7f3c0b11".into()),
        namespace: Some("k8s.io".into()),
        metadata: MetadataState::Complete,
    }
}

fn file_event(kind: Kind, path: &str, new_path: Option<&str>, flags: u32) -> E {
    let mut ev = base(kind);
    ev.detail = Detail::File(FileInfo {
        path: path.into(),
        new_path: new_path.map(Into::into),
        flags,
        mode: 0o644,
        result: if kind == Kind::Open { 3 } else { 0 },
        ..FileInfo::default()
    });
    E(ev)
}

impl E {
    /// The event's own copy of its process snapshot, to edit.
    fn process_mut(&mut self) -> &mut Process {
        Arc::make_mut(&mut self.0.process)
    }

    /// execve of `exe`; argv[0] is its file name.
    pub fn exec(exe: &str) -> E {
        let mut ev = base(Kind::Exec);
        let p = Arc::make_mut(&mut ev.process);
        p.exe = exe.into();
        let name = exe.rsplit('/').next().unwrap_or(exe).to_owned();
        p.comm = name.chars().take(15).collect();
        p.argv = vec![name];
        ev.detail = Detail::Exec(ExecInfo {
            filename: exe.into(),
            ..ExecInfo::default()
        });
        E(ev)
    }

    pub fn open(path: &str, flags: u32) -> E {
        file_event(Kind::Open, path, None, flags)
    }
    pub fn rename(old: &str, new: &str) -> E {
        file_event(Kind::Rename, old, Some(new), 0)
    }
    /// Hard link: `existing` gets the new name `new`.
    pub fn link(existing: &str, new: &str) -> E {
        file_event(Kind::Link, existing, Some(new), 0)
    }
    /// `ln -s target linkpath`.
    pub fn symlink(target: &str, linkpath: &str) -> E {
        file_event(Kind::Symlink, target, Some(linkpath), 0)
    }
    pub fn unlink(path: &str) -> E {
        file_event(Kind::Unlink, path, None, 0)
    }
    pub fn chmod(path: &str, mode: u32) -> E {
        let mut e = file_event(Kind::Chmod, path, None, 0);
        if let Some(f) = e.0.file_mut() {
            f.mode = mode;
        }
        e
    }
    pub fn connect_unix(path: &str) -> E {
        let mut ev = base(Kind::Connect);
        ev.detail = Detail::Net(NetInfo {
            family: Family::Unix,
            address: None,
            port: None,
            path: Some(path.into()),
            result: 0,
        });
        E(ev)
    }
    pub fn connect_inet(addr: &str, port: u16) -> E {
        let mut ev = base(Kind::Connect);
        ev.detail = Detail::Net(NetInfo {
            family: Family::Inet,
            address: Some(addr.parse().unwrap()),
            port: Some(port),
            path: None,
            result: 0,
        });
        E(ev)
    }
    pub fn fork() -> E {
        E(base(Kind::Fork))
    }

    pub fn host(mut self) -> E {
        self.0.container = None;
        self
    }
    /// The process that does it (its exe; comm and argv[0] follow).
    pub fn by(mut self, exe: &str) -> E {
        let name = exe.rsplit('/').next().unwrap_or(exe).to_owned();
        let p = self.process_mut();
        p.exe = exe.into();
        p.comm = name.chars().take(15).collect();
        if let Some(a0) = p.argv.first_mut() {
            *a0 = name;
        }
        self
    }
    pub fn comm(mut self, comm: &str) -> E {
        self.process_mut().comm = comm.into();
        self
    }
    pub fn parent(mut self, exe: &str) -> E {
        self.process_mut().lineage.insert(0, ancestor(exe, 4100));
        self
    }
    pub fn argv(mut self, argv: &[&str]) -> E {
        self.process_mut().argv = argv.iter().map(|s| s.to_string()).collect();
        self
    }
    /// The path given to execve (a script, for instance) when it differs from the exe.
    pub fn filename(mut self, f: &str) -> E {
        if let Some(x) = self.0.exec_mut() {
            x.filename = f.into();
        }
        self
    }
    pub fn uid(mut self, uid: u32, euid: u32) -> E {
        let p = self.process_mut();
        p.uid = uid;
        p.euid = euid;
        self
    }
    pub fn cwd(mut self, cwd: &str) -> E {
        self.process_mut().cwd = cwd.into();
        self
    }
    pub fn result(mut self, r: i64) -> E {
        if let Some(f) = self.0.file_mut() {
            f.result = r;
        }
        if let Some(n) = self.0.net_mut() {
            n.result = r;
        }
        self
    }
    pub fn new_binary(mut self, modified_by: Option<&str>) -> E {
        if let Some(x) = self.0.exec_mut() {
            x.new_binary = Some(NewBinary {
                evidence: if modified_by.is_some() {
                    NewBinaryEvidence::ObservedWrite
                } else {
                    NewBinaryEvidence::OverlayUpper
                },
                modified_by: modified_by.map(|exe| ancestor(exe, 77)),
                modified_at: modified_by.map(|_| Timestamp::from_unix_nanos(T0 - 5_000_000_000)),
            });
        }
        self
    }
    pub fn ev(self) -> Event {
        self.0
    }
}

/// One engine with every built-in rule, shared by the tests.
pub fn builtin() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::new([Catalog::builtin().unwrap()]))
}

pub fn eval(engine: &Engine, ev: &Event) -> Vec<Match> {
    let mut out = Vec::new();
    engine.evaluate(ev, &mut out);
    out
}

/// Table-driven check of one built-in rule: each case says whether the rule must fire.
pub fn check_rule(rule_id: &str, cases: Vec<(&str, E, bool)>) {
    let engine = builtin();
    assert!(
        engine.rules().any(|r| r.id == rule_id),
        "no built-in rule {rule_id}"
    );
    let mut failures = Vec::new();
    for (name, e, want) in cases {
        let ev = e.ev();
        let got = eval(engine, &ev);
        let fired = got.iter().any(|m| m.rule_id == rule_id);
        if fired != want {
            let ids: Vec<&str> = got.iter().map(|m| m.rule_id.as_str()).collect();
            failures.push(format!(
                "{name}: want fired={want}, got fired={fired} (matches: {ids:?})"
            ));
        }
    }
    assert!(failures.is_empty(), "{rule_id}:\n{}", failures.join("\n"));
}

/// The match of `rule_id` on `ev`; panics if the rule does not fire.
pub fn fire(rule_id: &str, e: E) -> (Match, Event) {
    let ev = e.ev();
    let got = eval(builtin(), &ev);
    let m = got
        .into_iter()
        .find(|m| m.rule_id == rule_id)
        .unwrap_or_else(|| panic!("{rule_id} did not fire"));
    (m, ev)
}
