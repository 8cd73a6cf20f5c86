// Package deploy_test checks the deployment files that have no API types to
// decode into: the compose file, the Render Blueprint and the Dockerfiles.
// The Kubernetes manifests are checked in ./kubernetes.
package deploy_test

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// drainDeadline is how long either program may take after SIGTERM.
const drainDeadline = 20 * time.Second

// readYAML decodes path into v, after a strict pass that rejects duplicate
// keys and malformed YAML anywhere in the file.
func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var anything any
	if err := yaml.UnmarshalStrict(b, &anything); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

type composeFile struct {
	Services map[string]struct {
		Image string `json:"image"`
		Build *struct {
			Context    string `json:"context"`
			Dockerfile string `json:"dockerfile"`
			Target     string `json:"target"`
		} `json:"build"`
		Ports       []string          `json:"ports"`
		Environment map[string]string `json:"environment"`
		DependsOn   map[string]struct {
			Condition string `json:"condition"`
		} `json:"depends_on"`
		Healthcheck *struct {
			Test []string `json:"test"`
		} `json:"healthcheck"`
		Volumes         []string `json:"volumes"`
		StopGracePeriod string   `json:"stop_grace_period"`
	} `json:"services"`
	Volumes map[string]any `json:"volumes"`
}

func TestCompose(t *testing.T) {
	t.Parallel()
	var c composeFile
	readYAML(t, "compose.yaml", &c)

	pg, ok := c.Services["postgres"]
	if !ok || !strings.HasPrefix(pg.Image, "postgres:15") || pg.Healthcheck == nil {
		t.Errorf("postgres: want image postgres:15 with a healthcheck, got %q", pg.Image)
	}
	if len(pg.Ports) > 0 {
		t.Errorf("postgres: published %v", pg.Ports)
	}
	if !slices.ContainsFunc(pg.Volumes, func(v string) bool {
		name, _, _ := strings.Cut(v, ":")
		_, declared := c.Volumes[name]
		return declared
	}) {
		t.Errorf("postgres: data not on a named volume: %v", pg.Volumes)
	}

	for name, target := range map[string]string{"proxy": "proxy", "storage-backend": "storage-backend"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, ok := c.Services[name]
			if !ok {
				t.Fatalf("no service %s", name)
			}
			if s.Build == nil || s.Build.Target != target || filepath.Clean(filepath.Join(s.Build.Context, s.Build.Dockerfile)) != filepath.Clean("../Dockerfile") {
				t.Errorf("build %+v, want the root Dockerfile, target %s", s.Build, target)
			}
			if s.DependsOn["postgres"].Condition != "service_healthy" {
				t.Errorf("depends_on postgres %+v, want service_healthy", s.DependsOn["postgres"])
			}
			if !strings.Contains(s.Environment["DATABASE_URL"], "@postgres:5432/") {
				t.Errorf("DATABASE_URL %q does not point at the postgres service", s.Environment["DATABASE_URL"])
			}
			if d, err := time.ParseDuration(s.StopGracePeriod); err != nil || d <= drainDeadline {
				t.Errorf("stop_grace_period %q, want more than the %s drain", s.StopGracePeriod, drainDeadline)
			}
		})
	}

	backend := c.Services["storage-backend"]
	if len(backend.Ports) > 0 {
		t.Errorf("storage-backend is published %v; it trusts X-Auth-* headers and must only be reached through the proxy", backend.Ports)
	}
	proxy := c.Services["proxy"]
	if !slices.Contains(proxy.Ports, "8080:8080") {
		t.Errorf("proxy ports %v, want 8080:8080", proxy.Ports)
	}
	for _, p := range proxy.Ports {
		if strings.HasSuffix(p, ":9464") && !strings.HasPrefix(p, "127.0.0.1:") {
			t.Errorf("proxy publishes metrics beyond the host's loopback: %s", p)
		}
	}
	if proxy.Environment["UPSTREAM_URL"] != "http://storage-backend:9000" || backend.Environment["LISTEN_ADDR"] != "0.0.0.0:9000" {
		t.Errorf("proxy UPSTREAM_URL %q, backend LISTEN_ADDR %q: they must meet on the compose network",
			proxy.Environment["UPSTREAM_URL"], backend.Environment["LISTEN_ADDR"])
	}
}

type envVar struct {
	Key          string `json:"key"`
	Value        string `json:"value"`
	Sync         *bool  `json:"sync"`
	FromDatabase *struct {
		Name     string `json:"name"`
		Property string `json:"property"`
	} `json:"fromDatabase"`
	FromService *struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		Property string `json:"property"`
	} `json:"fromService"`
}

type blueprint struct {
	Services []struct {
		Type             string   `json:"type"`
		Name             string   `json:"name"`
		Runtime          string   `json:"runtime"`
		Region           string   `json:"region"`
		DockerfilePath   string   `json:"dockerfilePath"`
		DockerContext    string   `json:"dockerContext"`
		PreDeployCommand string   `json:"preDeployCommand"`
		HealthCheckPath  string   `json:"healthCheckPath"`
		EnvVars          []envVar `json:"envVars"`
	} `json:"services"`
	Databases []struct {
		Name   string `json:"name"`
		Region string `json:"region"`
	} `json:"databases"`
}

func TestRenderBlueprint(t *testing.T) {
	t.Parallel()
	var b blueprint
	readYAML(t, "render.yaml", &b)
	if len(b.Databases) != 1 {
		t.Fatalf("%d databases, want 1", len(b.Databases))
	}
	db := b.Databases[0]
	want := map[string]struct{ typ, dockerfile, preDeploy string }{
		"authsidecar-proxy":           {"web", "Dockerfile", "proxy migrate up"},
		"authsidecar-storage-backend": {"pserv", "deploy/storage-backend.Dockerfile", "storage-backend migrate up"},
	}
	if len(b.Services) != len(want) {
		t.Fatalf("%d services, want %d", len(b.Services), len(want))
	}
	names := map[string]string{} // name -> type
	for _, s := range b.Services {
		names[s.Name] = s.Type
	}
	for _, s := range b.Services {
		w, ok := want[s.Name]
		if !ok {
			t.Errorf("unexpected service %s", s.Name)
			continue
		}
		if s.Type != w.typ || s.Runtime != "docker" || filepath.Clean(s.DockerfilePath) != w.dockerfile || s.DockerContext != "." {
			t.Errorf("%s: type %s runtime %s dockerfile %s context %s, want %s docker %s .", s.Name, s.Type, s.Runtime, s.DockerfilePath, s.DockerContext, w.typ, w.dockerfile)
		}
		if _, err := os.Stat(filepath.Join("..", s.DockerfilePath)); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
		if s.PreDeployCommand != w.preDeploy {
			t.Errorf("%s: preDeployCommand %q, want %q", s.Name, s.PreDeployCommand, w.preDeploy)
		}
		if s.Region != db.Region {
			t.Errorf("%s: region %s, database in %s; the private network is per region", s.Name, s.Region, db.Region)
		}
		env := map[string]envVar{}
		for _, e := range s.EnvVars {
			env[e.Key] = e
			if f := e.FromService; f != nil && names[f.Name] != f.Type {
				t.Errorf("%s: %s refers to %s %s, which is not in the Blueprint", s.Name, e.Key, f.Type, f.Name)
			}
		}
		if d := env["DATABASE_URL"].FromDatabase; d == nil || d.Name != db.Name || d.Property != "connectionString" {
			t.Errorf("%s: DATABASE_URL must come from the database's connectionString", s.Name)
		}
		if s.Type == "web" {
			if s.HealthCheckPath != "/readyz" {
				t.Errorf("%s: healthCheckPath %q, want /readyz", s.Name, s.HealthCheckPath)
			}
			if env["PORT"].Value != "8080" || env["LISTEN_ADDR"].Value != ":8080" {
				t.Errorf("%s: PORT %q and LISTEN_ADDR %q must name the same port", s.Name, env["PORT"].Value, env["LISTEN_ADDR"].Value)
			}
			for _, key := range []string{"SIGNING_KEY_FILE", "UPSTREAM_URL"} {
				if e := env[key]; e.Sync == nil || *e.Sync || e.Value != "" {
					t.Errorf("%s: %s must be sync: false, set per deployment", s.Name, key)
				}
			}
		}
	}
}

// stages returns the stage names of a Dockerfile in order and the images its
// stages start from.
func stages(t *testing.T, path string) (names, images []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || !strings.EqualFold(fields[0], "FROM") {
			continue
		}
		fields = slices.DeleteFunc(fields[1:], func(s string) bool { return strings.HasPrefix(s, "--platform=") })
		images = append(images, fields[0])
		name := ""
		if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
			name = fields[2]
		}
		names = append(names, name)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return names, images
}

func TestDockerfiles(t *testing.T) {
	t.Parallel()
	names, images := stages(t, "../Dockerfile")
	if len(names) == 0 || names[len(names)-1] != "proxy" || !slices.Contains(names, "storage-backend") {
		t.Errorf("root Dockerfile stages %v: want storage-backend, and proxy last so a plain build gives the proxy", names)
	}
	_, backendImages := stages(t, "storage-backend.Dockerfile")
	for _, img := range backendImages {
		if !slices.Contains(images, img) {
			t.Errorf("storage-backend.Dockerfile uses %s, the root Dockerfile does not: keep them in step", img)
		}
	}
	for _, img := range append(images, backendImages...) {
		if strings.HasPrefix(img, "gcr.io/distroless/") && !strings.HasSuffix(img, ":nonroot") {
			t.Errorf("runtime image %s is not the nonroot variant", img)
		}
	}
}
