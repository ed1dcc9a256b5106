"""Checks of the Kubernetes manifests in deploy/k8s/, run by ctest
(cmake/KvstreamTests.cmake). CI has no cluster, so:

* Schema: every manifest kustomization.yaml lists is validated, strictly
  (unknown fields are errors), against the Kubernetes OpenAPI JSON schemas
  that the PyPI package kubernetes-validate bundles, for the oldest
  Kubernetes the manifests support (1.27: native grpc probes are GA there)
  and the newest the package knows. The ServiceMonitor (a Prometheus
  Operator CRD) and the Kustomization are no core kinds: they are checked
  against the strict subset schemas below, with the same jsonschema.
  kubernetes-validate comes from scripts/setup.sh's venv; where it is
  missing the test installs it with pip into $KVSTREAM_CACHE/pylib (outside
  the clone, cached), and skips these tests, saying why, only if that fails.
* Consistency, always (PyYAML only): the ConfigMap sets exactly the server's
  flags (server/main.cc); probes are gRPC health checks on FLAGS_port; GPU
  and memory resources fit the flags; the grace period covers the preStop
  delay, the longest request and the server's own shutdown deadline
  (server/server_app.cc); the HPA's metrics are ones server/metrics.cc
  exports (directly or through prometheus-adapter-rules.yaml); ports, labels
  and selectors agree between Deployment, Service, ServiceMonitor, HPA, PDB.
* `kubectl kustomize` where kubectl is installed.

Environment: KVSTREAM_CACHE (default ~/.cache/kvstream), as scripts/setup.sh.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import unittest

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
K8S = os.path.join(ROOT, "deploy", "k8s")
# Oldest Kubernetes the manifests are written for, and the newest schema the
# validator ships (resolved at run time).
OLDEST_K8S = "1.27.0"
VALIDATOR_PIN_DEFAULT = "1.37.0"
# Files in deploy/k8s/ that are no Kubernetes object (Helm values).
NOT_OBJECTS = {"kustomization.yaml", "prometheus-adapter-rules.yaml"}


def read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def load_yaml(name):
    with open(os.path.join(K8S, name), encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def kustomization():
    return load_yaml("kustomization.yaml")[0]


def objects():
    """{kind: object} for every manifest kustomization.yaml lists (one object each)."""
    out = {}
    for name in kustomization()["resources"]:
        for doc in load_yaml(name):
            out[doc["kind"]] = doc
    return out


def server_flags():
    flags = re.findall(r"ABSL_FLAG\(\s*[\w:]+\s*,\s*(\w+)\s*,", read("server", "main.cc"))
    assert flags, "no ABSL_FLAG in server/main.cc"
    return flags


def exported_metrics():
    """(all kvstream_* names, gauge names) that server/metrics.cc renders."""
    text = read("server", "metrics.cc")
    return set(re.findall(r'"(kvstream_\w+)', text)), set(re.findall(r'gauge\(\s*"(kvstream_\w+)"', text))


def server_shutdown_seconds():
    """The deadline ServerApp::Shutdown gives gRPC calls still open after the drain."""
    m = re.search(r"server_->Shutdown\([^;]*std::chrono::seconds\((\d+)\)", read("server", "server_app.cc"))
    assert m, "server/server_app.cc: no server_->Shutdown(... seconds(N)) deadline found"
    return int(m.group(1))


def quantity_bytes(q):
    """A Kubernetes memory quantity ("32Gi", "500M", "1024") in bytes."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(q))
    assert m, f"not a memory quantity: {q}"
    mult = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 10**3, "M": 10**6,
            "G": 10**9, "T": 10**12}[m.group(2)]
    return int(float(m.group(1)) * mult)


def quantity_number(q):
    """A CPU or metric quantity ("4", "500m", "800m") as a float."""
    s = str(q)
    return float(s[:-1]) / 1000 if s.endswith("m") else float(s)


def duration_seconds(text):
    """A compose duration ("2m", "90s", "1m30s") in seconds."""
    total = 0
    for value, unit in re.findall(r"(\d+)([hms])", text):
        total += int(value) * {"h": 3600, "m": 60, "s": 1}[unit]
    return total


# ---- the validator ----------------------------------------------------------------

def validator_pin():
    m = re.search(r"^KUBERNETES_VALIDATE_VERSION=(\S+)$", read("scripts", "versions.env"), re.MULTILINE)
    return m.group(1) if m else VALIDATOR_PIN_DEFAULT


def load_validator():
    """(kubernetes_validate module, None) or (None, why it cannot be had)."""
    try:
        import kubernetes_validate  # noqa: F401  (scripts/setup.sh's venv)
        return kubernetes_validate, None
    except ImportError:
        pass
    pin = validator_pin()
    cache = os.environ.get("KVSTREAM_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "kvstream"))
    target = os.path.join(cache, "pylib", f"kubernetes-validate-{pin}-py{sys.version_info[0]}{sys.version_info[1]}")
    if not os.path.isdir(os.path.join(target, "kubernetes_validate")):
        env = dict(os.environ, PIP_CACHE_DIR=os.path.join(cache, "pip"), PIP_DISABLE_PIP_VERSION_CHECK="1")
        try:
            r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", target + ".tmp",
                                f"kubernetes-validate=={pin}"], env=env, capture_output=True, text=True,
                               timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"pip install kubernetes-validate=={pin} failed: {e}"
        if r.returncode != 0:
            shutil.rmtree(target + ".tmp", ignore_errors=True)
            return None, f"pip install kubernetes-validate=={pin} failed: {(r.stderr or r.stdout).strip()[-400:]}"
        shutil.rmtree(target, ignore_errors=True)
        os.rename(target + ".tmp", target)
    # Appended, so the venv's own PyYAML stays the one in use.
    sys.path.append(target)
    try:
        import kubernetes_validate
        return kubernetes_validate, None
    except ImportError as e:
        return None, f"kubernetes-validate installed in {target} but not importable: {e}"


VALIDATOR, VALIDATOR_MISSING = load_validator()
NEEDS_VALIDATOR = unittest.skipIf(VALIDATOR is None, f"schema check skipped: {VALIDATOR_MISSING}")

# Strict subsets (every field these manifests may use, nothing else) of the
# schemas of the two kinds that are not core Kubernetes: the Prometheus
# Operator's ServiceMonitor CRD (monitoring.coreos.com/v1) and kustomize's
# Kustomization (kustomize.config.k8s.io/v1beta1). Written from their
# reference documentation; a field outside them is a test failure, so a typo
# cannot slip through as an ignored key.
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
META = {"type": "object", "additionalProperties": False, "required": ["name"],
        "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                       "namespace": {"type": "string"}, "labels": STRING_MAP, "annotations": STRING_MAP}}
DURATION = {"type": "string", "pattern": r"^(0|(\d+(ms|s|m|h))+)$"}
SERVICE_MONITOR_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"}, "metadata": META,
        "spec": {"type": "object", "additionalProperties": False, "required": ["selector", "endpoints"],
                 "properties": {
                     "jobLabel": {"type": "string"},
                     "namespaceSelector": {"type": "object", "additionalProperties": False,
                                           "properties": {"any": {"type": "boolean"},
                                                          "matchNames": {"type": "array",
                                                                         "items": {"type": "string"}}}},
                     "selector": {"type": "object", "additionalProperties": False,
                                  "properties": {"matchLabels": STRING_MAP,
                                                 "matchExpressions": {"type": "array"}}},
                     "endpoints": {"type": "array", "minItems": 1, "items": {
                         "type": "object", "additionalProperties": False,
                         "properties": {"port": {"type": "string"}, "targetPort": {"type": ["string", "integer"]},
                                        "path": {"type": "string", "pattern": "^/"},
                                        "scheme": {"enum": ["http", "https"]},
                                        "interval": DURATION, "scrapeTimeout": DURATION,
                                        "honorLabels": {"type": "boolean"},
                                        "relabelings": {"type": "array"}, "metricRelabelings": {"type": "array"}}}},
                 }},
    },
}
KUSTOMIZATION_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "resources"],
    "properties": {
        "apiVersion": {"const": "kustomize.config.k8s.io/v1beta1"}, "kind": {"const": "Kustomization"},
        "namespace": {"type": "string"}, "namePrefix": {"type": "string"},
        "resources": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "labels": {"type": "array"},
        "images": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["name"],
            "properties": {"name": {"type": "string"}, "newName": {"type": "string"}, "newTag": {"type": "string"},
                           "digest": {"type": "string"}}}},
    },
}


class Schema(unittest.TestCase):
    @NEEDS_VALIDATOR
    def test_every_core_manifest_passes_the_strict_kubernetes_schema(self):
        from kubernetes_validate import utils
        versions = [OLDEST_K8S, utils.latest_version()]
        checked = 0
        for name in kustomization()["resources"]:
            for doc in load_yaml(name):
                if doc["apiVersion"] == "monitoring.coreos.com/v1":
                    continue  # a CRD: test_crd_and_kustomization_match_their_schemas
                for version in versions:
                    with self.subTest(file=name, kind=doc["kind"], kubernetes=version):
                        try:
                            VALIDATOR.validate(doc, version, strict=True)
                        except utils.ValidationError as e:
                            path = ".".join(str(p) for p in e.path)
                            self.fail(f"{name}: {doc['kind']} at {path}: {e.message}")
                        except utils.SchemaNotFoundError as e:
                            self.fail(f"{name}: {e.message}")
                checked += 1
        self.assertGreaterEqual(checked, 6)

    @NEEDS_VALIDATOR
    def test_crd_and_kustomization_match_their_schemas(self):
        import jsonschema  # installed with kubernetes-validate
        jsonschema.Draft202012Validator.check_schema(SERVICE_MONITOR_SCHEMA)
        jsonschema.validate(objects()["ServiceMonitor"], SERVICE_MONITOR_SCHEMA,
                            cls=jsonschema.Draft202012Validator)
        jsonschema.validate(kustomization(), KUSTOMIZATION_SCHEMA, cls=jsonschema.Draft202012Validator)

    @NEEDS_VALIDATOR
    def test_the_validator_rejects_what_it_should(self):
        """A typo, a named port in a grpc probe, a list as a GPU count: a schema check that passes
        these would be no check."""
        import copy
        from kubernetes_validate import utils
        deployment = objects()["Deployment"]
        breakages = {
            "typo": lambda c: c.__setitem__("readinesProbe", c.pop("readinessProbe")),
            "named grpc port": lambda c: c["livenessProbe"]["grpc"].__setitem__("port", "grpc"),
            "gpu list": lambda c: c["resources"]["limits"].__setitem__("nvidia.com/gpu", [1]),
        }
        for what, breakage in breakages.items():
            broken = copy.deepcopy(deployment)
            breakage(broken["spec"]["template"]["spec"]["containers"][0])
            with self.subTest(what), self.assertRaises(utils.ValidationError):
                VALIDATOR.validate(broken, OLDEST_K8S, strict=True)

    def test_kustomization_lists_every_manifest_and_names_the_image(self):
        on_disk = {os.path.basename(p) for p in glob.glob(os.path.join(K8S, "*.yaml"))} - NOT_OBJECTS
        self.assertEqual(set(kustomization()["resources"]), on_disk)
        self.assertEqual(set(objects()), {"ConfigMap", "PersistentVolumeClaim", "Deployment", "Service",
                                          "ServiceMonitor", "HorizontalPodAutoscaler", "PodDisruptionBudget"})
        image = container()["image"]
        names = [i["name"] for i in kustomization()["images"]]
        self.assertIn(image.split(":")[0], names)
        # The image deploy/docker-compose.yml builds from the Dockerfile for GPUs.
        with open(os.path.join(ROOT, "deploy", "docker-compose.yml"), encoding="utf-8") as f:
            self.assertEqual(yaml.safe_load(f)["services"]["kvstream"]["image"], image)

    @unittest.skipUnless(shutil.which("kubectl"), "kubectl is not installed (not packaged by Debian 12)")
    def test_kubectl_kustomize_builds_it(self):
        out = subprocess.run(["kubectl", "kustomize", K8S], check=True, capture_output=True, text=True).stdout
        kinds = {d["kind"] for d in yaml.safe_load_all(out) if d}
        self.assertEqual(kinds, set(objects()))


# ---- consistency with the server ---------------------------------------------------

def deployment():
    return objects()["Deployment"]


def pod_spec():
    return deployment()["spec"]["template"]["spec"]


def container():
    containers = pod_spec()["containers"]
    assert len(containers) == 1, "one container: the server"
    return containers[0]


def flags():
    return objects()["ConfigMap"]["data"]


def pod_labels():
    return deployment()["spec"]["template"]["metadata"]["labels"]


class ConfigMapFlags(unittest.TestCase):
    def test_sets_exactly_every_server_flag_as_a_string(self):
        data = flags()
        self.assertEqual(set(data), {f"FLAGS_{f}" for f in server_flags()})
        for key, value in data.items():
            self.assertIsInstance(value, str, f"{key}: ConfigMap values must be strings")

    def test_the_deployment_loads_it_whole(self):
        c = container()
        self.assertEqual(c["envFrom"], [{"configMapRef": {"name": objects()["ConfigMap"]["metadata"]["name"]}}])
        # No env: or args: that would override a ConfigMap flag behind its back.
        self.assertNotIn("args", c)
        self.assertNotIn("command", c)  # the image's ENTRYPOINT (--tryfromenv) reads them
        for var in c.get("env", []):
            self.assertFalse(var["name"].startswith("FLAGS_"), var["name"])

    def test_listens_on_all_interfaces_on_the_gpu(self):
        self.assertEqual(flags()["FLAGS_host"], "0.0.0.0")
        self.assertEqual(flags()["FLAGS_device"], "cuda")


class Probes(unittest.TestCase):
    def test_startup_readiness_and_liveness_are_grpc_health_checks_on_the_grpc_port(self):
        c = container()
        port = int(flags()["FLAGS_port"])
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            with self.subTest(kind):
                probe = c[kind]
                handlers = set(probe) & {"grpc", "httpGet", "tcpSocket", "exec"}
                self.assertEqual(handlers, {"grpc"})
                self.assertEqual(probe["grpc"]["port"], port)
                # The server sets the overall status only (server/server_app.cc): no service name.
                self.assertEqual(probe["grpc"].get("service", ""), "")
                self.assertLess(probe["timeoutSeconds"], probe["periodSeconds"])

    def test_windows_fit_loading_readiness_and_a_busy_server(self):
        c = container()
        window = lambda p: p["periodSeconds"] * p["failureThreshold"]  # noqa: E731
        # Model load (NOT_SERVING until loaded) may take minutes for a large model.
        self.assertGreaterEqual(window(c["startupProbe"]), 300)
        # Readiness reacts faster than liveness kills.
        self.assertLess(window(c["readinessProbe"]), window(c["livenessProbe"]))
        self.assertGreaterEqual(window(c["livenessProbe"]), 30)


class Resources(unittest.TestCase):
    def test_gpu_is_requested_and_limited_alike(self):
        res = container()["resources"]
        gpus = res["limits"]["nvidia.com/gpu"]
        self.assertEqual(res["requests"].get("nvidia.com/gpu", gpus), gpus)  # extended resources: equal
        # One GPU per pod, or one per tensor-parallel rank once the server has that flag.
        want = int(flags().get("FLAGS_tensor_parallel", "1") or "1")
        self.assertEqual(int(gpus), max(want, 1))

    def test_memory_covers_the_host_kv_budget(self):
        res = container()["resources"]
        request, limit = quantity_bytes(res["requests"]["memory"]), quantity_bytes(res["limits"]["memory"])
        self.assertLessEqual(request, limit)
        host_kv = int(flags()["FLAGS_host_kv_budget_bytes"])
        # 0 would mean 1/4 of the node's free RAM, which ignores the container limit.
        self.assertGreater(host_kv, 0)
        # The rest: libtorch + CUDA context, the mapped model file, request queues.
        self.assertGreaterEqual(limit, host_kv + (8 << 30))
        if flags()["FLAGS_device"] != "cuda":
            self.assertGreater(int(flags()["FLAGS_kv_budget_bytes"]), 0, "a CPU pod must bound its KV in RAM")

    def test_engine_threads_match_the_cpu_request(self):
        threads = int(flags()["FLAGS_threads"])
        self.assertGreaterEqual(threads, 1, "0 = every core of the node, not of the pod")
        self.assertLessEqual(threads, quantity_number(container()["resources"]["requests"]["cpu"]))

    def test_dev_shm_and_tmp_are_writable_with_a_read_only_root(self):
        mounts = {m["mountPath"]: m for m in container()["volumeMounts"]}
        volumes = {v["name"]: v for v in pod_spec()["volumes"]}
        self.assertTrue(container()["securityContext"]["readOnlyRootFilesystem"])
        self.assertEqual(volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"], "Memory")
        self.assertIn("emptyDir", volumes[mounts["/tmp"]["name"]])


class Drain(unittest.TestCase):
    def test_grace_period_covers_prestop_longest_request_and_grpc_shutdown(self):
        spec = pod_spec()
        grace = spec["terminationGracePeriodSeconds"]
        pre_stop = container()["lifecycle"]["preStop"]["exec"]["command"]
        self.assertEqual(pre_stop[0], "sleep")
        pre_stop_s = int(pre_stop[1])
        longest = int(deployment()["metadata"]["annotations"]["kvstream/max-request-seconds"])
        needed = pre_stop_s + longest + server_shutdown_seconds()
        self.assertGreaterEqual(grace, needed)
        self.assertLessEqual(grace, needed + 30, "far more grace than the drain needs delays every rollout")
        self.assertGreater(pre_stop_s, 0, "a pause for endpoint removal to reach the clients")

    def test_longest_request_is_the_compose_stop_grace_period(self):
        with open(os.path.join(ROOT, "deploy", "docker-compose.yml"), encoding="utf-8") as f:
            compose = yaml.safe_load(f)
        period = duration_seconds(compose["x-kvstream"]["stop_grace_period"])
        self.assertEqual(int(deployment()["metadata"]["annotations"]["kvstream/max-request-seconds"]), period)

    def test_rollouts_and_disruptions_keep_capacity(self):
        rolling = deployment()["spec"]["strategy"]["rollingUpdate"]
        self.assertEqual(rolling["maxUnavailable"], 0)
        pdb = objects()["PodDisruptionBudget"]
        self.assertEqual(pdb["spec"]["selector"]["matchLabels"], deployment()["spec"]["selector"]["matchLabels"])
        self.assertEqual(pdb["spec"]["maxUnavailable"], 1)


class Security(unittest.TestCase):
    def test_runs_as_the_images_non_root_user_without_privileges(self):
        uid = int(re.search(r"useradd [^\n]*--uid (\d+)", read("Dockerfile")).group(1))
        pod = pod_spec()["securityContext"]
        self.assertTrue(pod["runAsNonRoot"])
        self.assertEqual(pod["runAsUser"], uid)
        self.assertNotEqual(pod["runAsUser"], 0)
        self.assertEqual(pod["seccompProfile"]["type"], "RuntimeDefault")
        sc = container()["securityContext"]
        self.assertFalse(sc["allowPrivilegeEscalation"])
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        self.assertNotIn("privileged", sc)

    def test_models_and_secrets_are_mounted_read_only(self):
        mounts = {m["mountPath"]: m for m in container()["volumeMounts"]}
        volumes = {v["name"]: v for v in pod_spec()["volumes"]}
        models = volumes[mounts["/models"]["name"]]
        self.assertTrue(mounts["/models"]["readOnly"])
        self.assertEqual(models["persistentVolumeClaim"]["claimName"],
                         objects()["PersistentVolumeClaim"]["metadata"]["name"])
        self.assertTrue(models["persistentVolumeClaim"]["readOnly"])
        self.assertIn("ReadOnlyMany", objects()["PersistentVolumeClaim"]["spec"]["accessModes"])
        self.assertTrue(mounts["/run/kvstream"]["readOnly"])
        self.assertTrue(volumes[mounts["/run/kvstream"]["name"]]["secret"]["optional"])
        # The model the flags name is in the image or on the volume.
        self.assertRegex(flags()["FLAGS_model"], r"^(/opt/kvstream/models/|/models/)")


class ServiceAndMetrics(unittest.TestCase):
    def test_container_ports_are_the_flags(self):
        ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
        self.assertEqual(ports["grpc"], int(flags()["FLAGS_port"]))
        self.assertEqual(ports["metrics"], int(flags()["FLAGS_metrics_port"]))

    def test_headless_service_selects_the_pods_on_both_ports(self):
        svc = objects()["Service"]
        self.assertEqual(svc["spec"]["clusterIP"], "None")
        self.assertFalse(svc["spec"].get("publishNotReadyAddresses", False))
        self.assertEqual(svc["spec"]["selector"], deployment()["spec"]["selector"]["matchLabels"])
        self.assertLessEqual(set(deployment()["spec"]["selector"]["matchLabels"].items()), set(pod_labels().items()))
        ports = {p["name"]: p for p in svc["spec"]["ports"]}
        self.assertEqual(ports["grpc"]["port"], int(flags()["FLAGS_port"]))
        self.assertEqual(ports["grpc"]["targetPort"], "grpc")
        self.assertEqual(ports["metrics"]["targetPort"], "metrics")

    def test_prometheus_finds_metrics_by_annotation_and_service_monitor(self):
        annotations = deployment()["spec"]["template"]["metadata"]["annotations"]
        self.assertEqual(annotations["prometheus.io/scrape"], "true")
        self.assertEqual(annotations["prometheus.io/port"], flags()["FLAGS_metrics_port"])
        self.assertEqual(annotations["prometheus.io/path"], "/metrics")
        monitor = objects()["ServiceMonitor"]
        svc = objects()["Service"]
        self.assertLessEqual(set(monitor["spec"]["selector"]["matchLabels"].items()),
                             set(svc["metadata"]["labels"].items()))
        endpoint = monitor["spec"]["endpoints"][0]
        self.assertIn(endpoint["port"], {p["name"] for p in svc["spec"]["ports"]})
        self.assertEqual(endpoint["port"], "metrics")
        self.assertEqual(endpoint["path"], "/metrics")


def adapter_rules():
    with open(os.path.join(K8S, "prometheus-adapter-rules.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f)["rules"]["custom"]


class Autoscaler(unittest.TestCase):
    def test_scales_the_deployment_on_custom_pod_metrics(self):
        hpa = objects()["HorizontalPodAutoscaler"]
        self.assertEqual(hpa["apiVersion"], "autoscaling/v2")
        ref = hpa["spec"]["scaleTargetRef"]
        self.assertEqual((ref["apiVersion"], ref["kind"], ref["name"]),
                         ("apps/v1", "Deployment", deployment()["metadata"]["name"]))
        self.assertGreaterEqual(hpa["spec"]["minReplicas"], 1)
        self.assertGreaterEqual(hpa["spec"]["maxReplicas"], hpa["spec"]["minReplicas"])
        for metric in hpa["spec"]["metrics"]:
            self.assertEqual(metric["type"], "Pods")

    def test_every_metric_is_the_servers_directly_or_through_an_adapter_rule(self):
        names, gauges = exported_metrics()
        self.assertIn("kvstream_queue_length", gauges)
        self.assertIn("kvstream_kv_bytes_in_use", gauges)
        served = {}
        for rule in adapter_rules():
            for used in re.findall(r"\b(kvstream_\w+)", rule["seriesQuery"] + " " + rule["metricsQuery"]):
                self.assertIn(used, names, f"adapter rule uses {used}, which server/metrics.cc does not export")
            self.assertRegex(rule["name"]["matches"], r"^\^kvstream_\w+\$$")
            self.assertIn(rule["name"]["matches"][1:-1], gauges)
            served[rule["name"]["as"]] = rule
            self.assertEqual(set(rule["resources"]["overrides"]), {"namespace", "pod"})
        hpa_metrics = [m["pods"] for m in objects()["HorizontalPodAutoscaler"]["spec"]["metrics"]]
        for m in hpa_metrics:
            self.assertIn(m["metric"]["name"], served, "an HPA metric no adapter rule serves")
        self.assertIn("kvstream_queue_length", [m["metric"]["name"] for m in hpa_metrics])

    def test_targets_are_reachable_before_the_server_refuses_work(self):
        for m in objects()["HorizontalPodAutoscaler"]["spec"]["metrics"]:
            target = quantity_number(m["pods"]["target"]["averageValue"])
            name = m["pods"]["metric"]["name"]
            self.assertGreater(target, 0, name)
            if name == "kvstream_queue_length":
                self.assertLess(target, int(flags()["FLAGS_max_queue"]) / 4, "scale long before RESOURCE_EXHAUSTED")
            if name.endswith("_ratio"):
                self.assertLess(target, 1.0)


class Readme(unittest.TestCase):
    def test_notes_load_balancing_alternatives_tls_probes_and_the_adapter(self):
        text = read("deploy", "k8s", "README.md")
        for word in ("dns:///", "round_robin", "Envoy", "Ingress", "prometheus-adapter", "TLS",
                     "terminationGracePeriodSeconds", "MAX_CONNECTION_AGE"):
            self.assertIn(word, text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
