//! Event shorthands for the Rust tests. They fill an [`EventSpec`], the same description the
//! `*.tests.yaml` cases use, and [`build_event`] builds every event: there is one builder.
#![allow(dead_code)]

use std::sync::OnceLock;

#[allow(unused_imports)]
pub use peregrine_detect::cases::{CONTAINER_ID, T0};
use peregrine_detect::cases::{ContainerSpec, EventSpec, Flags, Mode, NewBinarySpec, build_event};
use peregrine_detect::{Catalog, Engine, Match, O_APPEND, O_CREAT, O_RDWR, O_TRUNC, O_WRONLY};
use peregrine_event::{Event, Kind};

pub const O_RDONLY: u32 = 0;
pub const WRITE: u32 = O_WRONLY | O_CREAT | O_TRUNC;
pub const APPEND: u32 = O_WRONLY | O_APPEND;
pub const RDWR: u32 = O_RDWR;

/// An event under construction.
#[derive(Clone, Debug)]
pub struct E(pub EventSpec);

fn file_event(kind: Kind, path: &str, new_path: Option<&str>) -> E {
    let mut s = EventSpec::new(kind);
    s.path = Some(path.into());
    s.new_path = new_path.map(Into::into);
    E(s)
}

impl E {
    /// execve of `exe`; argv[0] is its file name.
    pub fn exec(exe: &str) -> E {
        let mut s = EventSpec::new(Kind::Exec);
        s.exe = Some(exe.into());
        E(s)
    }
    pub fn open(path: &str, flags: u32) -> E {
        let mut e = file_event(Kind::Open, path, None);
        e.0.flags = Some(Flags(flags));
        e
    }
    pub fn rename(old: &str, new: &str) -> E {
        file_event(Kind::Rename, old, Some(new))
    }
    /// Hard link: `existing` gets the new name `new`.
    pub fn link(existing: &str, new: &str) -> E {
        file_event(Kind::Link, existing, Some(new))
    }
    /// `ln -s target linkpath`.
    pub fn symlink(target: &str, linkpath: &str) -> E {
        file_event(Kind::Symlink, target, Some(linkpath))
    }
    pub fn unlink(path: &str) -> E {
        file_event(Kind::Unlink, path, None)
    }
    pub fn chmod(path: &str, mode: u32) -> E {
        let mut e = file_event(Kind::Chmod, path, None);
        e.0.mode = Some(Mode(mode));
        e
    }
    pub fn connect_unix(path: &str) -> E {
        let mut s = EventSpec::new(Kind::Connect);
        s.path = Some(path.into());
        E(s)
    }
    pub fn connect_inet(addr: &str, port: u16) -> E {
        let mut s = EventSpec::new(Kind::Connect);
        s.address = Some(addr.parse().unwrap());
        s.port = Some(port);
        E(s)
    }
    pub fn fork() -> E {
        E(EventSpec::new(Kind::Fork))
    }

    pub fn host(mut self) -> E {
        self.0.host = true;
        self
    }
    /// The process that does it (its exe; comm and argv[0] follow).
    pub fn by(mut self, exe: &str) -> E {
        self.0.exe = Some(exe.into());
        self
    }
    pub fn comm(mut self, comm: &str) -> E {
        self.0.comm = Some(comm.into());
        self
    }
    /// A new nearest ancestor.
    pub fn parent(mut self, exe: &str) -> E {
        self.0.parents.insert(0, exe.into());
        self
    }
    pub fn argv(mut self, argv: &[&str]) -> E {
        self.0.argv = Some(argv.iter().map(|s| s.to_string()).collect());
        self
    }
    /// The path given to execve (a script, for instance) when it differs from the exe.
    pub fn filename(mut self, f: &str) -> E {
        self.0.filename = Some(f.into());
        self
    }
    pub fn uid(mut self, uid: u32, euid: u32) -> E {
        self.0.uid = Some(uid);
        self.0.euid = Some(euid);
        self
    }
    pub fn cwd(mut self, cwd: &str) -> E {
        self.0.cwd = Some(cwd.into());
        self
    }
    pub fn result(mut self, r: i64) -> E {
        self.0.result = Some(r);
        self
    }
    pub fn new_binary(mut self, modified_by: Option<&str>) -> E {
        self.0.new_binary = Some(NewBinarySpec {
            modified_by: modified_by.map(Into::into),
        });
        self
    }
    /// Changes to the default container.
    fn container(&mut self) -> &mut ContainerSpec {
        self.0.container.get_or_insert_with(ContainerSpec::default)
    }
    pub fn image(mut self, image: &str) -> E {
        self.container().image = Some(image.into());
        self
    }
    pub fn pod(mut self, namespace: &str, name: &str) -> E {
        let c = self.container();
        c.pod_namespace = Some(namespace.into());
        c.pod_name = Some(name.into());
        self
    }
    pub fn ev(self) -> Event {
        build_event(&self.0).unwrap_or_else(|e| panic!("{e}: {:?}", self.0))
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
