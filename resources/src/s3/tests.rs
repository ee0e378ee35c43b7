//! The S3 store against a real S3 server (s3s-fs, in process, on an ephemeral loopback port,
//! checking SigV4 signatures), with injected server errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};

use super::*;
use crate::ParquetIoManager;

const ACCESS_KEY: &str = "robo-test-access";
const SECRET_KEY: &str = "sekrit-key-4242";

/// s3s-fs with failure injection: the next `fail_puts` PUTs answer 500 InternalError.
struct Flaky {
    inner: s3s_fs::FileSystem,
    fail_puts: Arc<AtomicU32>,
}

#[async_trait::async_trait]
impl s3s::S3 for Flaky {
    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        if self.fail_puts.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(s3s::s3_error!(InternalError, "injected failure"));
        }
        self.inner.put_object(req).await
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        self.inner.get_object(req).await
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.inner.list_objects_v2(req).await
    }
}

struct Server {
    _root: tempfile::TempDir,
    endpoint: String,
    fail_puts: Arc<AtomicU32>,
}

async fn server() -> Server {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("outputs")).unwrap();
    let fail_puts = Arc::new(AtomicU32::new(0));
    let fs = s3s_fs::FileSystem::new(root.path()).map_err(|e| format!("{e:?}")).unwrap();
    let mut builder = s3s::service::S3ServiceBuilder::new(Flaky { inner: fs, fail_puts: fail_puts.clone() });
    builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else { continue };
            let service = service.clone();
            tokio::spawn(async move {
                let _ = Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(socket), service).await;
            });
        }
    });
    Server { _root: root, endpoint, fail_puts }
}

fn store(server: &Server, secret: &str, max_attempts: u32) -> S3ObjectStore {
    let sdk = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(ACCESS_KEY, secret, None, None, "static"));
    let config = S3Config { endpoint: Some(server.endpoint.clone()), max_attempts, ..S3Config::new("outputs") };
    S3ObjectStore::with_sdk_config(sdk, &config)
}

#[tokio::test]
async fn write_read_list_and_overwrite() {
    let server = server().await;
    let s3 = store(&server, SECRET_KEY, 4);
    let uri = s3.put("usage_snapshot/2025-12-15T00:00.parquet", Bytes::from_static(b"one")).await.unwrap();
    assert_eq!(uri, "s3://outputs/robo-assets/usage_snapshot/2025-12-15T00:00.parquet");
    s3.put("usage_snapshot/2025-12-15T00:00.parquet", Bytes::from_static(b"two")).await.unwrap();
    s3.put("storage_bill/2025-12-15.parquet", Bytes::from_static(b"bill")).await.unwrap();
    assert_eq!(&s3.get("usage_snapshot/2025-12-15T00:00.parquet").await.unwrap()[..], b"two");
    assert_eq!(s3.list("usage_snapshot/").await.unwrap(), ["usage_snapshot/2025-12-15T00:00.parquet"]);
    assert_eq!(s3.list("").await.unwrap().len(), 2);
    assert!(matches!(s3.get("nope.parquet").await, Err(ObjectStoreError::NotFound { .. })));
    assert!(matches!(s3.put("../escape", Bytes::new()).await, Err(ObjectStoreError::InvalidKey { .. })));
}

#[tokio::test]
async fn transient_server_errors_are_retried() {
    let server = server().await;
    let s3 = store(&server, SECRET_KEY, 4);
    server.fail_puts.store(2, Ordering::SeqCst);
    s3.put("storage_bill/2025-12-15.parquet", Bytes::from_static(b"bill")).await.unwrap();
    assert_eq!(server.fail_puts.load(Ordering::SeqCst), 0, "both failures were retried through");
    assert_eq!(&s3.get("storage_bill/2025-12-15.parquet").await.unwrap()[..], b"bill");
}

#[tokio::test]
async fn a_persistent_server_error_is_a_clear_error_without_credentials() {
    let server = server().await;
    let s3 = store(&server, SECRET_KEY, 3);
    server.fail_puts.store(100, Ordering::SeqCst);
    let err = s3.put("storage_bill/2025-12-15.parquet", Bytes::from_static(b"bill")).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("object store put failed for s3://outputs/robo-assets/storage_bill/2025-12-15.parquet: "),
        "{text}"
    );
    assert!(text.contains("InternalError"), "{text}");
    assert!(!text.contains(SECRET_KEY), "{text}");
    assert_eq!(server.fail_puts.load(Ordering::SeqCst), 97, "three attempts, then it gave up");

    // Wrong credentials: refused by the server's signature check, and still no secret shown.
    let wrong = store(&server, "not-the-secret", 1);
    let err = wrong.get("storage_bill/2025-12-15.parquet").await.unwrap_err().to_string();
    assert!(!err.contains("not-the-secret"), "{err}");
}

#[tokio::test]
async fn parquet_outputs_round_trip_through_s3() {
    use arrow_array::{Int64Array, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};
    use engine::{AssetKey, IoManager, OutputContext};
    let server = server().await;
    let io = ParquetIoManager::new(Arc::new(store(&server, SECRET_KEY, 4)));
    let schema = Arc::new(Schema::new(vec![Field::new("bytes", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap();
    let asset = AssetKey::parse("usage_snapshot").unwrap();
    let output = OutputContext {
        asset: asset.clone(),
        partition_key: "2025-12-15T02:00".to_owned(),
        code_version: "1".to_owned(),
        run_id: lineage::RunId::new(),
    };
    let stored = io.store(&output, &batch).await.unwrap();
    assert_eq!(stored.uri, "s3://outputs/robo-assets/usage_snapshot/2025-12-15T02:00.parquet");
    let (back, version) = io.load(&asset, "2025-12-15T02:00").await.unwrap();
    assert_eq!(back, batch);
    assert_eq!(version, stored.data_version);
}

#[tokio::test]
async fn many_parquet_partitions_load_through_s3_as_one_at_a_time() {
    let server = server().await;
    let io = ParquetIoManager::new(Arc::new(store(&server, SECRET_KEY, 4)));
    crate::parquet_io::tests::loads_many_as_one_at_a_time(&io).await;
}
