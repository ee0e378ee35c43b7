//! `deploy/`, checked by what runs here (no container engine): every manifest parses; every
//! robo-assets command in compose.yaml and the Kubernetes manifests is accepted by this binary's
//! CLI; every variable they set is one the README documents; pods run as non-root without
//! privilege escalation; the autoscaler scales on a metric the binary exposes; the image runs
//! the stripped binary alone as a non-root user.

use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_json::Value;

use crate::common::Robo;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every YAML document of a file, merge keys (`<<:`) applied, as JSON values.
fn yaml(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            let mut v = serde_norway::Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            v.apply_merge().expect("merge keys apply");
            serde_json::to_value(v).expect("YAML as JSON")
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap_or_else(|| panic!("not a list: {v}")).iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

/// The binary accepts `args` (clap checks every flag and value before `--help` answers).
fn assert_accepted(robo: &Robo, args: &[String], what: &str) {
    let mut with_help: Vec<&str> = args.iter().map(String::as_str).collect();
    with_help.push("--help");
    let run = robo.run(&with_help);
    assert_eq!(run.code, 0, "{what}: robo-assets {args:?} is refused:\n{}", run.stderr);
}

/// The variables the README's configuration table documents, and the standard ones.
fn documented(name: &str) -> bool {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    name == "RUST_LOG" || name.starts_with("AWS_") || readme.contains(&format!("`{name}`"))
}

#[test]
fn compose_runs_migrate_once_then_a_daemon_two_workers_and_the_view() {
    let robo = Robo::new();
    let compose = yaml(&deploy().join("compose.yaml")).remove(0);
    let services = compose["services"].as_object().expect("services");
    for name in ["postgres", "s3", "migrate", "daemon", "worker", "ui"] {
        assert!(services.contains_key(name), "compose has {name}");
    }
    let mut ours = 0;
    for (name, service) in services {
        if service["image"] != "robo-assets:latest" {
            continue;
        }
        ours += 1;
        assert_accepted(&robo, &strings(&service["command"]), &format!("compose service {name}"));
        for var in service["environment"].as_object().expect("environment").keys() {
            assert!(documented(var), "compose service {name} sets {var}, which the README does not document");
        }
    }
    assert_eq!(ours, 4, "migrate, daemon, worker and ui run the image");
    assert_eq!(strings(&services["migrate"]["command"]), ["migrate"]);
    assert_eq!(services["migrate"]["restart"], "no", "migrate is a one-shot");
    assert_eq!(services["worker"]["deploy"]["replicas"], 2);
    assert!(strings(&services["daemon"]["command"]).contains(&"--no-worker".to_owned()));
    // The daemon prunes finished history, and keeps the shared settings beside its own.
    assert_eq!(services["daemon"]["environment"]["ROBO_ASSETS_RETENTION"], "30d");
    assert_eq!(
        services["daemon"]["environment"]["ROBO_ASSETS_LINEAGE_URL"],
        services["worker"]["environment"]["ROBO_ASSETS_LINEAGE_URL"]
    );
    for name in ["daemon", "worker", "ui"] {
        assert_eq!(
            services[name]["depends_on"]["migrate"]["condition"], "service_completed_successfully",
            "{name} starts after migrate"
        );
    }
}

#[test]
fn the_kubernetes_manifests_are_what_kustomize_lists_and_every_pod_is_locked_down() {
    let robo = Robo::new();
    let k8s = deploy().join("k8s");
    let kustomization = yaml(&k8s.join("kustomization.yaml")).remove(0);
    let mut kinds = Vec::new();
    for file in strings(&kustomization["resources"]) {
        for doc in yaml(&k8s.join(&file)) {
            let kind = doc["kind"].as_str().expect("a kind").to_owned();
            let name = doc["metadata"]["name"].as_str().expect("a name").to_owned();
            let pod = match kind.as_str() {
                "Deployment" | "Job" => &doc["spec"]["template"]["spec"],
                _ => {
                    kinds.push((kind, name, doc));
                    continue;
                }
            };
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{file}: {name} runs as non-root");
            for container in pod["containers"].as_array().expect("containers") {
                assert_eq!(container["image"], "robo-assets", "{file}: the kustomize image");
                assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false, "{file}: {name}");
                assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true, "{file}: {name}");
                assert_accepted(&robo, &strings(&container["args"]), &format!("{file}: {name}"));
            }
            kinds.push((kind, name, doc));
        }
    }
    let find = |kind: &str, name: &str| {
        kinds
            .iter()
            .find(|(k, n, _)| k == kind && n == name)
            .map(|(_, _, d)| d)
            .unwrap_or_else(|| panic!("{kind} {name}"))
    };
    assert_eq!(
        strings(&find("Job", "robo-assets-migrate")["spec"]["template"]["spec"]["containers"][0]["args"]),
        ["migrate"]
    );
    let daemon = find("Deployment", "robo-assets-daemon");
    assert_eq!(daemon["spec"]["replicas"], 2, "two daemons are safe");
    let env = &daemon["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array().expect("env").iter().any(|v| v["name"] == "ROBO_ASSETS_RETENTION" && v["value"] == "30d"),
        "the daemon prunes finished history: {env}"
    );
    let hpa = find("HorizontalPodAutoscaler", "robo-assets-worker");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "robo-assets-worker");
    let metric = &hpa["spec"]["metrics"][0]["external"]["metric"];
    // The metric the autoscaler reads is one the binary serves, with the label it selects on.
    let served = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/metrics.rs")).unwrap();
    assert_eq!(metric["name"], "robo_assets_requests");
    assert!(served.contains("\"requests\"") && served.contains("Registry::with_prefix(\"robo_assets\")"));
    assert_eq!(metric["selector"]["matchLabels"]["state"], "available");
}

#[test]
fn the_image_runs_the_stripped_binary_alone_as_a_non_root_user() {
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    let stages: Vec<&str> = dockerfile.split("\nFROM ").skip(1).collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    assert!(stages[0].contains("cargo build --release --locked --bin robo-assets"));
    assert!(stages[0].contains("strip target/release/robo-assets"));
    let runtime = stages[1];
    let copies: Vec<&str> = runtime.lines().filter(|l| l.starts_with("COPY")).collect();
    assert_eq!(copies, ["COPY --from=build /src/target/release/robo-assets /usr/local/bin/robo-assets"]);
    let user = runtime.lines().find_map(|l| l.strip_prefix("USER ")).expect("a USER");
    assert!(!user.starts_with('0') && !user.starts_with("root"), "runs as {user}");
    assert!(runtime.contains("ENTRYPOINT [\"/usr/local/bin/robo-assets\"]"));
}
