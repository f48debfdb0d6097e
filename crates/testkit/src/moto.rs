//! A local AWS for tests, demos and the local stack: moto in server mode on 127.0.0.1.
//! (`scripts/setup` installs it into the repository's `.venv`.) Product code never knows it
//! is talking to moto: it gets the same standard configuration a real deployment gets.
//!
//! moto is started through `crates/testkit/moto/peregrine_moto.py`, which registers the EKS
//! operations moto 5.2.5 lacks (access entries, Pod Identity associations, add-ons) before
//! starting moto's own server; see that file for what they do and do not emulate.

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    #[error("moto_server not found in {venv} or on PATH: run scripts/setup")]
    NotInstalled { venv: String },
    #[error("starting moto_server: {0}")]
    Spawn(std::io::Error),
    #[error("moto_server did not answer on 127.0.0.1:{port} within {waited:?}")]
    NotReady { port: u16, waited: Duration },
    #[error("moto's {path} answered {answer}")]
    Api { path: String, answer: String },
}

/// The account moto answers as, unless told otherwise.
pub const ACCOUNT_ID: &str = "123456789012";
pub const REGION: &str = "us-east-1";

pub struct Moto {
    child: Option<Child>,
    pub port: u16,
    /// The Python interpreter that has moto installed.
    python: PathBuf,
}

/// The launcher that adds the EKS operations moto lacks.
pub fn launcher() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("moto/peregrine_moto.py")
}

/// The repository's `.venv` first (this crate is `crates/testkit`), then `PATH`.
fn find_server() -> Result<PathBuf, MotoError> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server");
    if venv.exists() {
        return Ok(venv);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("moto_server"))
        .find(|p| p.exists())
        .ok_or(MotoError::NotInstalled {
            venv: venv.display().to_string(),
        })
}

/// The interpreter beside `moto_server` (the venv's), so the launcher imports the same moto.
fn find_python() -> Result<PathBuf, MotoError> {
    let server = find_server()?;
    let dir = server.parent().map(PathBuf::from).unwrap_or_default();
    ["python", "python3"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists())
        .ok_or(MotoError::NotInstalled {
            venv: dir.display().to_string(),
        })
}

fn free_port() -> Result<u16, MotoError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(MotoError::Spawn)?;
    l.local_addr().map(|a| a.port()).map_err(MotoError::Spawn)
}

impl Moto {
    /// Starts moto on a free loopback port and waits until it answers.
    pub fn start() -> Result<Moto, MotoError> {
        let mut m = Moto {
            child: None,
            port: free_port()?,
            python: find_python()?,
        };
        m.spawn()?;
        Ok(m)
    }

    fn spawn(&mut self) -> Result<(), MotoError> {
        let child = Command::new(&self.python)
            .arg(launcher())
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // moto must not pin one account: assumed-role calls are then scoped to their account.
            .env_remove("MOTO_ACCOUNT_ID")
            .spawn()
            .map_err(MotoError::Spawn)?;
        self.child = Some(child);
        let waited = Duration::from_secs(30);
        let deadline = Instant::now() + waited;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err(MotoError::NotReady {
                    port: self.port,
                    waited,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills moto (all its state goes with it), as an outage would.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts moto again on the same port, empty.
    pub fn restart(&mut self) -> Result<(), MotoError> {
        self.stop();
        self.spawn()
    }

    /// From now on moto authenticates and authorizes every request against its IAM (users,
    /// roles and their policies; moto checks actions, not resources or conditions): calls with
    /// credentials moto never issued fail. Set everything up before calling this.
    pub fn enforce_iam(&self) -> Result<(), MotoError> {
        self.post("/moto-api/reset-auth", "0")
    }

    /// A bodied POST to moto's own API, answered 200.
    fn post(&self, path: &str, body: &str) -> Result<(), MotoError> {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(MotoError::Spawn)?;
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .map_err(MotoError::Spawn)?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).map_err(MotoError::Spawn)?;
        if answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200") {
            Ok(())
        } else {
            Err(MotoError::Api {
                path: path.into(),
                answer: answer.lines().next().unwrap_or_default().into(),
            })
        }
    }

    /// The server's process id (benchmarks read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The standard environment a process needs to use this moto.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", REGION.into()),
            ("AWS_DEFAULT_REGION", REGION.into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// An SDK configuration for this moto, the same as `peregrine_aws::sdk_config` would build
    /// from [`Moto::env`], without touching this process's environment.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .endpoint_url(self.endpoint())
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_credential_types::Credentials::new(
                "test", "test", None, None, "moto",
            ))
            .load()
            .await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}
