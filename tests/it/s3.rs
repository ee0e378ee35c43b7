//! The CLI writing its outputs to a real S3-compatible server (s3s-fs) on 127.0.0.1, started
//! in the test process; then the server goes away mid-way.

use std::path::PathBuf;

use crate::common::Robo;

pub(crate) const ACCESS_KEY: &str = "robo-it-access";
pub(crate) const SECRET_KEY: &str = "robo-it-sekrit-0451";

pub(crate) struct S3Server {
    root: tempfile::TempDir,
    pub(crate) endpoint: String,
    accept_loop: tokio::task::JoinHandle<()>,
}

pub(crate) async fn start_s3() -> S3Server {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("outputs")).unwrap();
    let fs = s3s_fs::FileSystem::new(root.path()).map_err(|e| format!("{e:?}")).unwrap();
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let accept_loop = tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else { continue };
            let service = service.clone();
            tokio::spawn(async move {
                let _ = Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(socket), service).await;
            });
        }
    });
    S3Server { root, endpoint, accept_loop }
}

impl S3Server {
    pub(crate) fn object(&self, key: &str) -> PathBuf {
        self.root.path().join("outputs/robo-assets").join(key)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_go_to_s3_and_a_dead_server_is_a_recorded_failure() {
    let mut server = start_s3().await;
    let robo = Robo::new();
    let env = [
        ("S3_BUCKET_NAME", "outputs"),
        ("AWS_ENDPOINT_URL", server.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ("RUST_LOG", "debug"),
    ];
    let args = ["materialize", "storage_bill", "--partition", "2025-12-15", "--with-upstream"];
    let run = tokio::task::spawn_blocking({
        let (robo_cmd, env) = (robo.command(&args), env.map(|(k, v)| (k.to_owned(), v.to_owned())));
        move || {
            let mut cmd = robo_cmd;
            cmd.envs(env);
            cmd.output().unwrap()
        }
    })
    .await
    .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains(SECRET_KEY) && !stderr.contains(SECRET_KEY), "the secret key leaked");
    assert!(stdout.contains("s3://outputs/robo-assets/storage_bill/2025-12-15.parquet"), "{stdout}");
    let bill = std::fs::read(server.object("storage_bill/2025-12-15.parquet")).unwrap();
    assert_eq!(&bill[..4], b"PAR1");
    assert!(server.object("usage_snapshot/2025-12-15T23:00.parquet").exists());
    let mut db = robo.lineage_db().await;
    let (uri, version): (String, String) =
        sqlx::query_as("SELECT storage_uri, data_version FROM materializations WHERE asset_key = 'storage_bill'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(uri, "s3://outputs/robo-assets/storage_bill/2025-12-15.parquet");
    assert_eq!(version, crate::common::data_version(bill));

    // The server goes away: the next day's steps fail with a clear, recorded error, and no
    // lineage row points at an object that does not exist.
    server.accept_loop.abort();
    let _ = (&mut server.accept_loop).await;
    let args = ["materialize", "storage_bill", "--partition", "2025-12-16", "--with-upstream", "--concurrency", "2"];
    let mut cmd = robo.command(&args);
    cmd.envs(env.iter().map(|(k, v)| (*k, *v)));
    let run = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "storing output: object store put failed for s3://outputs/robo-assets/usage_snapshot/2025-12-16T"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains(SECRET_KEY));
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM asset_partitions WHERE last_attempt_status = 'failed'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(failed, 24, "every hour of the 16th is recorded as failed");
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT storage_uri FROM materializations").fetch_all(&mut db).await.unwrap();
    assert_eq!(rows.len(), 25);
    for uri in rows {
        let key = uri.strip_prefix("s3://outputs/robo-assets/").unwrap();
        assert!(server.object(key).exists(), "{uri} has no object");
    }
}
