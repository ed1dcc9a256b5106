"""Checks of the deployment files, run by ctest (cmake/KvstreamTests.cmake).

CI has no Docker engine, so the image itself is never built here. What is
checked instead:

* deploy/docker-compose.yml: `docker compose config` where the compose plugin
  is installed; always a schema check with PyYAML (keys, profiles, GPU
  reservation, every FLAGS_* variable a real server flag, every bind source
  present, every ${VAR} with a default).
* Dockerfile: hadolint is not packaged by Debian, so a documented checklist
  (DockerfileChecklist below, one test per item); hadolint also runs when it
  is on PATH.
* The runtime image's contents: deploy/bundle.sh (the Dockerfile's bundle
  stage) runs on the local build; the server is started from that bundle with
  the Dockerfile's own ENTRYPOINT and ENV, its HEALTHCHECK command must report
  SERVING, /metrics must expose every metric the Grafana dashboard charts,
  and SIGTERM must end it cleanly.
* README: the configuration table names every server flag and variable.

Environment: KVSTREAM_BINARY_DIR (the build tree with kvstream-server and
kvstream), set by ctest.
"""

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy")
BINARY_DIR = os.environ.get("KVSTREAM_BINARY_DIR", os.path.join(ROOT, "build"))


def read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def server_flags():
    """Flag names (underscores) declared by server/main.cc."""
    flags = re.findall(r"ABSL_FLAG\(\s*[\w:]+\s*,\s*(\w+)\s*,", read("server", "main.cc"))
    assert flags, "no ABSL_FLAG in server/main.cc"
    return flags


def versions():
    out = {}
    for line in read("scripts", "versions.env").splitlines():
        m = re.match(r"^(\w+)=(.*)$", line.strip())
        if m:
            out[m.group(1)] = m.group(2)
    return out


# ---- Dockerfile parsing -------------------------------------------------------

def dockerfile_instructions():
    """[(KEYWORD, arguments)] with continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", read("Dockerfile"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def dockerfile_stages():
    """{stage name: [(KEYWORD, arguments)]}, plus the FROM image of each under key 'FROM'."""
    stages, current = {}, None
    for keyword, rest in dockerfile_instructions():
        if keyword == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", rest, re.IGNORECASE)
            current = m.group(2) or f"stage{len(stages)}"
            stages[current] = [("FROM", m.group(1))]
        elif current is not None:
            stages[current].append((keyword, rest))
    return stages


def dockerfile_args():
    """Global ARG defaults (those before the first FROM)."""
    out = {}
    for keyword, rest in dockerfile_instructions():
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in rest:
            k, v = rest.split("=", 1)
            out[k] = v
    return out


def stage_env(stage):
    env = {}
    for keyword, rest in stage:
        if keyword == "ENV":
            for tok in shlex.split(rest):
                k, _, v = tok.partition("=")
                env[k] = v
    return env


class DockerfileChecklist(unittest.TestCase):
    """The Dockerfile checklist (hadolint's role where hadolint is absent):

    1. The build stage runs exactly scripts/setup.sh then scripts/build.sh,
       the commands CI runs (.ci/run -> scripts/test.sh).
    2. CUDA images are nvidia/cuda:<CUDA_VERSION>-devel/-runtime-ubuntu24.04,
       CUDA_VERSION = CUDA_IMAGE_VERSION of scripts/versions.env, CUDA 13.0.
    3. A CPU-only variant (build arg VARIANT=cpu) on Debian 12, like CI.
    4. Every base image is pinned to a tag (no implicit or explicit latest).
    5. The runtime stage holds only the bundle: COPY --from=bundle, no
       compilers or package installs, no ADD.
    6. A non-root USER runs the server.
    7. HEALTHCHECK calls the CLI's health subcommand (grpc.health.v1).
    8. STOPSIGNAL SIGTERM and an exec-form ENTRYPOINT: the server itself is
       PID 1 and drains on SIGTERM.
    9. Every server flag can be set from the environment (--tryfromenv lists
       them all) and EXPOSE names the gRPC and metrics ports.
    10. No sudo; apt-get install only with -y and --no-install-recommends.
    11. .dockerignore keeps .git, build trees and local models out.
    """

    @classmethod
    def setUpClass(cls):
        cls.stages = dockerfile_stages()
        cls.args = dockerfile_args()
        cls.runtime = cls.stages["runtime"]

    def test_build_stage_runs_exactly_the_ci_setup_and_build_scripts(self):
        build = self.stages["build"]
        self.assertEqual(build[0][1], "build-base-${VARIANT}")
        runs = [rest for keyword, rest in build if keyword == "RUN"]
        self.assertEqual(runs, ["bash scripts/setup.sh", "bash scripts/build.sh"])
        test_sh = read("scripts", "test.sh")
        self.assertIn("\nbash scripts/setup.sh\n", test_sh)
        self.assertIn("\nbash scripts/build.sh", test_sh)
        self.assertIn("scripts/test.sh", read(".ci", "run"))

    def test_cuda_images_match_the_pinned_cuda_13_0(self):
        pinned = versions()["CUDA_IMAGE_VERSION"]
        self.assertTrue(pinned.startswith("13.0."), pinned)
        self.assertEqual(self.args["CUDA_VERSION"], pinned)
        self.assertEqual(self.stages["build-base-cuda"][0][1], "nvidia/cuda:${CUDA_VERSION}-devel-ubuntu24.04")
        self.assertEqual(self.stages["runtime-base-cuda"][0][1], "nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu24.04")
        self.assertIn("13.0", read("deploy", "gpu", "run.sh"))  # the GPU machine's toolkit

    def test_cpu_variant_is_a_build_arg_on_debian_12(self):
        self.assertEqual(self.args["VARIANT"], "cuda")
        self.assertEqual(self.stages["build-base-cpu"][0][1], "debian:12")
        self.assertEqual(self.stages["runtime-base-cpu"][0][1], "debian:12-slim")
        self.assertEqual(stage_env(self.stages["build-base-cpu"])["KVSTREAM_CUDA"], "OFF")
        self.assertEqual(stage_env(self.stages["build-base-cuda"])["KVSTREAM_CUDA"], "ON")
        self.assertEqual(self.runtime[0][1], "runtime-base-${VARIANT}")

    def test_every_base_image_is_pinned(self):
        names = set(self.stages)
        for name, stage in self.stages.items():
            image = stage[0][1]
            if image.split(":")[0] in names or "${VARIANT}" in image:
                continue  # an earlier stage
            self.assertRegex(image, r"^[\w./-]+:[\w.${}-]+$", f"{name}: {image} has no tag")
            self.assertNotIn(":latest", image)

    def test_runtime_stage_holds_only_the_bundle(self):
        keywords = [k for k, _ in self.runtime]
        self.assertNotIn("ADD", keywords)
        copies = [rest for k, rest in self.runtime if k == "COPY"]
        self.assertEqual(copies, ["--from=bundle /opt/kvstream /opt/kvstream"])
        for k, rest in self.runtime:
            if k == "RUN":
                self.assertNotRegex(rest, r"apt-get|apt |pip|gcc|g\+\+|cmake", rest)
        bundle_runs = [rest for k, rest in self.stages["bundle"] if k == "RUN"]
        self.assertEqual(bundle_runs, ["bash deploy/bundle.sh build /opt/kvstream"])

    def test_server_runs_as_a_non_root_user(self):
        users = [rest for k, rest in self.runtime if k == "USER"]
        self.assertEqual(len(users), 1)
        self.assertNotIn(users[0].split(":")[0], ("root", "0"))

    def test_healthcheck_uses_the_cli_health_subcommand(self):
        checks = [rest for k, rest in self.runtime if k == "HEALTHCHECK"]
        self.assertEqual(len(checks), 1)
        self.assertRegex(checks[0], r"CMD kvstream health --target=\"127\.0\.0\.1:\$\{FLAGS_port\}\"")

    def test_sigterm_reaches_the_server_as_pid_1(self):
        self.assertIn(("STOPSIGNAL", "SIGTERM"), self.runtime)
        entry = [rest for k, rest in self.runtime if k == "ENTRYPOINT"]
        self.assertEqual(len(entry), 1)
        argv = json.loads(entry[0])  # exec form, no shell in between
        self.assertEqual(argv[0], "kvstream-server")

    def test_every_server_flag_is_settable_from_the_environment(self):
        argv = json.loads([rest for k, rest in self.runtime if k == "ENTRYPOINT"][0])
        tryfromenv = [a for a in argv if a.startswith("--tryfromenv=")]
        self.assertEqual(len(tryfromenv), 1)
        self.assertEqual(sorted(tryfromenv[0].split("=", 1)[1].split(",")), sorted(server_flags()))
        env = stage_env(self.runtime)
        exposed = " ".join(rest for k, rest in self.runtime if k == "EXPOSE").split()
        self.assertIn(env["FLAGS_port"], exposed)
        self.assertIn(env["FLAGS_metrics_port"], exposed)
        self.assertEqual(env["FLAGS_host"], "0.0.0.0")

    def test_no_sudo_and_apt_installs_are_minimal(self):
        for keyword, rest in dockerfile_instructions():
            if keyword != "RUN":
                continue
            self.assertNotIn("sudo", rest)
            if "apt-get install" in rest:
                self.assertIn("-y", rest)
                self.assertIn("--no-install-recommends", rest)

    def test_dockerignore_keeps_out_git_builds_and_models(self):
        lines = read(".dockerignore").splitlines()
        for entry in (".git", "build*/", "models/*.gguf", "deploy/secrets/"):
            self.assertIn(entry, lines)

    @unittest.skipUnless(shutil.which("hadolint"), "hadolint is not installed (not packaged by Debian)")
    def test_hadolint_passes(self):
        subprocess.run(["hadolint", os.path.join(ROOT, "Dockerfile")], check=True)


# ---- docker compose -------------------------------------------------------------

SERVICE_KEYS = {
    "build", "image", "command", "entrypoint", "environment", "env_file", "ports", "expose", "volumes",
    "deploy", "profiles", "networks", "depends_on", "restart", "healthcheck", "stop_signal",
    "stop_grace_period", "user", "working_dir", "labels", "logging", "ulimits", "shm_size", "ipc", "init",
}


def compose():
    with open(os.path.join(DEPLOY, "docker-compose.yml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


def docker_compose_available():
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


class ComposeFile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.doc = compose()
        cls.services = cls.doc["services"]

    @unittest.skipUnless(docker_compose_available(), "docker compose plugin not installed: schema check only")
    def test_docker_compose_config_accepts_it(self):
        for profile in ("gpu", "cpu"):
            subprocess.run(["docker", "compose", "-f", os.path.join(DEPLOY, "docker-compose.yml"), "--profile",
                            profile, "config", "--quiet"], check=True)

    def test_top_level_and_service_keys_are_compose_keys(self):
        for key in self.doc:
            self.assertTrue(key in ("name", "services", "volumes", "networks", "secrets", "configs")
                            or key.startswith("x-"), key)
        for name, svc in self.services.items():
            self.assertLessEqual(set(svc), SERVICE_KEYS, name)
            self.assertTrue("image" in svc or "build" in svc, name)

    def test_server_has_gpu_and_cpu_profiles(self):
        gpu, cpu = self.services["kvstream"], self.services["kvstream-cpu"]
        self.assertEqual(gpu["profiles"], ["gpu"])
        self.assertEqual(cpu["profiles"], ["cpu"])
        self.assertEqual(gpu["build"]["args"]["VARIANT"], "cuda")
        self.assertEqual(cpu["build"]["args"]["VARIANT"], "cpu")
        self.assertEqual(gpu["build"]["context"], "..")
        self.assertTrue(os.path.isfile(os.path.join(DEPLOY, gpu["build"]["context"], gpu["build"]["dockerfile"])))
        devices = gpu["deploy"]["resources"]["reservations"]["devices"]
        self.assertEqual(devices[0]["driver"], "nvidia")
        self.assertIn("gpu", devices[0]["capabilities"])
        self.assertEqual(cpu["environment"]["FLAGS_device"], "cpu")
        # Prometheus scrapes "kvstream": the CPU service answers to it too.
        self.assertIn("kvstream", cpu["networks"]["default"]["aliases"])
        self.assertNotIn("profiles", self.services["prometheus"])
        self.assertNotIn("profiles", self.services["grafana"])

    def test_every_server_flag_is_set_through_the_environment(self):
        flags = set(server_flags())
        for name in ("kvstream", "kvstream-cpu"):
            env = self.services[name]["environment"]
            given = {k[len("FLAGS_"):] for k in env if k.startswith("FLAGS_")}
            self.assertLessEqual(given, flags, f"{name}: FLAGS_ variables that are no server flag")
            self.assertEqual(given, flags, f"{name}: server flags not set from the environment")
            self.assertEqual(env["FLAGS_host"], "0.0.0.0")

    def test_every_variable_has_a_default(self):
        text = read("deploy", "docker-compose.yml")
        for m in re.finditer(r"\$\{([^}]*)\}", text):
            self.assertRegex(m.group(1), r"^\w+:-", f"${{{m.group(1)}}} has no default")

    def test_bind_mounts_exist_and_named_volumes_are_declared(self):
        declared = set(self.doc.get("volumes") or {})
        for name, svc in self.services.items():
            for vol in svc.get("volumes", []):
                source = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", vol).split(":")[0]
                if source.startswith("."):
                    self.assertTrue(os.path.exists(os.path.join(DEPLOY, source)) or source == "../models",
                                    f"{name}: {source} missing")
                else:
                    self.assertIn(source, declared, f"{name}: volume {source} not declared")

    def test_metrics_port_is_scraped_by_prometheus(self):
        with open(os.path.join(DEPLOY, "prometheus", "prometheus.yml"), encoding="utf-8") as f:
            prom = yaml.safe_load(f)
        job = [j for j in prom["scrape_configs"] if j["job_name"] == "kvstream"][0]
        self.assertEqual(job["metrics_path"], "/metrics")
        port = self.services["kvstream"]["environment"]["FLAGS_metrics_port"]
        self.assertEqual(job["static_configs"][0]["targets"], [f"kvstream:{port}"])
        self.assertIn(port, self.services["kvstream"]["expose"])
        mounts = self.services["prometheus"]["volumes"]
        self.assertIn("./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro", mounts)

    def test_grafana_provisions_the_datasource_and_dashboard(self):
        with open(os.path.join(DEPLOY, "grafana", "provisioning", "datasources", "prometheus.yml")) as f:
            source = yaml.safe_load(f)["datasources"][0]
        self.assertEqual(source["url"], "http://prometheus:9090")
        with open(os.path.join(DEPLOY, "grafana", "provisioning", "dashboards", "kvstream.yml")) as f:
            provider = yaml.safe_load(f)["providers"][0]
        mounts = self.services["grafana"]["volumes"]
        self.assertIn(f"./grafana/dashboards:{provider['options']['path']}:ro", mounts)
        dash = dashboard()
        for panel in dash["panels"]:
            self.assertEqual(panel["datasource"]["uid"], source["uid"], panel["title"])
            self.assertTrue(panel["targets"], panel["title"])


def dashboard():
    with open(os.path.join(DEPLOY, "grafana", "dashboards", "kvstream.json"), encoding="utf-8") as f:
        return json.load(f)


def dashboard_metrics():
    """Metric names (histograms by base name) that the dashboard's queries use."""
    names = set()
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"\b(kvstream_\w+)", target["expr"]):
                names.add(re.sub(r"_(bucket|sum|count)$", "", name))
    return names


class Dashboard(unittest.TestCase):
    def test_charts_what_the_issue_asks_for(self):
        titles = " | ".join(p["title"] for p in dashboard()["panels"])
        metrics = dashboard_metrics()
        for want in ("kvstream_time_to_first_token_seconds", "kvstream_inter_token_latency_seconds",
                     "kvstream_tokens_per_second", "kvstream_request_peak_kv_bytes_total", "kvstream_queue_length"):
            self.assertIn(want, metrics)
        for word in ("first token", "Inter-token", "Tokens per second", "by strategy", "Queue length"):
            self.assertIn(word, titles)


# ---- the runtime image's contents, served ---------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SYSTEM_LIBS = re.compile(r"^(ld-linux|libc\.so|libm\.so|libpthread\.so|libdl\.so|librt\.so|libresolv\.so|linux-vdso)")


@unittest.skipUnless(os.path.exists(os.path.join(BINARY_DIR, "kvstream-server"))
                     and os.path.exists(os.path.join(BINARY_DIR, "kvstream")),
                     f"kvstream-server and kvstream not built in {BINARY_DIR}")
class RuntimeBundle(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.prefix = tempfile.mkdtemp(prefix="kvstream-bundle-")
        subprocess.run(["bash", os.path.join(DEPLOY, "bundle.sh"), "--symlink", BINARY_DIR, cls.prefix], check=True)
        runtime = dockerfile_stages()["runtime"]
        cls.image_env = stage_env(runtime)
        cls.entrypoint = json.loads([rest for k, rest in runtime if k == "ENTRYPOINT"][0])
        cls.healthcheck = [rest for k, rest in runtime if k == "HEALTHCHECK"][0].split(" CMD ", 1)[1]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.prefix, ignore_errors=True)

    def env(self, **extra):
        """The image's ENV, with /opt/kvstream mapped onto the bundle, and nothing from this process."""
        env = {k: v.replace("/opt/kvstream", self.prefix) for k, v in self.image_env.items()}
        env["PATH"] = f"{self.prefix}/bin:/usr/bin:/bin"
        env.update(extra)
        return env

    def test_every_library_resolves_inside_the_bundle(self):
        env = {"LD_LIBRARY_PATH": f"{self.prefix}/lib", "PATH": "/usr/bin:/bin"}
        for program in ("kvstream-server", "kvstream"):
            out = subprocess.run(["ldd", f"{self.prefix}/bin/{program}"], env=env, capture_output=True,
                                 text=True, check=True).stdout
            for line in out.splitlines():
                parts = line.split()
                if not parts or SYSTEM_LIBS.match(parts[0]) or parts[0].startswith("/"):
                    continue
                self.assertNotIn("not found", line)
                self.assertTrue(parts[2].startswith(f"{self.prefix}/lib/"), f"{program}: {line.strip()}")

    def test_entrypoint_serves_health_metrics_and_drains_on_sigterm(self):
        port, metrics_port = free_port(), free_port()
        env = self.env(FLAGS_host="127.0.0.1", FLAGS_port=str(port), FLAGS_metrics_port=str(metrics_port),
                       FLAGS_threads="1")
        argv = [os.path.join(self.prefix, "bin", self.entrypoint[0])] + self.entrypoint[1:]
        log = tempfile.TemporaryFile()
        self.addCleanup(log.close)
        server = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline, health = time.time() + 180, None
            while time.time() < deadline:
                self.assertIsNone(server.poll(), "server exited early")
                health = subprocess.run(["sh", "-c", self.healthcheck], env=env, capture_output=True, text=True)
                if health.returncode == 0:
                    break
                time.sleep(0.5)
            self.assertEqual(health.returncode, 0, health.stdout + health.stderr)
            self.assertEqual(health.stdout.strip(), "SERVING")
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
                text = r.read().decode()
            exposed = set(re.findall(r"^# TYPE (\w+) ", text, re.MULTILINE))
            self.assertLessEqual(dashboard_metrics(), exposed, "dashboard charts metrics the server lacks")
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                code = server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                raise
            log.seek(0)
            output = log.read().decode(errors="replace")
        self.assertEqual(code, 0, output)
        self.assertIn("signal 15 received", output)


# ---- README -------------------------------------------------------------------

class Readme(unittest.TestCase):
    def test_configuration_table_names_every_flag_and_variable(self):
        text = read("README.md")
        section = text[text.index("### Configuration"):]
        for flag in server_flags():
            self.assertIn(f"`--{flag.replace('_', '-')}`", section, flag)
            self.assertIn(f"`FLAGS_{flag}`", section, flag)
        compose_vars = set(re.findall(r"\$\{(\w+):-", read("deploy", "docker-compose.yml")))
        for var in compose_vars:
            self.assertIn(f"`{var}`", section, var)

    def test_keeps_the_quick_start_and_troubleshooting(self):
        text = read("README.md")
        self.assertIn("## Deploy with docker compose", text)
        self.assertIn("### Troubleshooting", text)
        self.assertIn("docker compose -f deploy/docker-compose.yml --profile cpu up", text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
