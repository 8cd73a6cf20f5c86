// Package kubernetes_test renders every kustomization in this directory, the
// way `kubectl apply -k` would, decodes each object strictly into the
// Kubernetes API types, and checks the invariants the deployment relies on:
// who can reach the backend, how pods stop, what runs as whom.
package kubernetes_test

import (
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// drainDeadline is how long either program may take, after SIGTERM, to finish
// the requests in flight before it exits.
const drainDeadline = 20 * time.Second

// proxyContainer is the proxy's container name in the server pod.
const proxyContainer = "proxy"

// secretExample is the documented shape of the Secret that the manifests
// reference but deliberately do not contain.
const secretExample = "secret.example.yaml"

// decoder decodes YAML or JSON strictly into the types registered below: an
// unknown kind, an unknown or misspelt field, or a duplicate field is an error.
var decoder = func() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		appsv1.AddToScheme, batchv1.AddToScheme, corev1.AddToScheme,
		networkingv1.AddToScheme, policyv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}()

// rendering is the decoded output of one kustomization.
type rendering struct {
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	configMaps      []*corev1.ConfigMap
	secrets         []*corev1.Secret
	serviceAccounts []*corev1.ServiceAccount
	cronJobs        []*batchv1.CronJob
	pdbs            []*policyv1.PodDisruptionBudget
	netpols         []*networkingv1.NetworkPolicy
}

func (r *rendering) add(obj runtime.Object) error {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		r.deployments = append(r.deployments, o)
	case *corev1.Service:
		r.services = append(r.services, o)
	case *corev1.ConfigMap:
		r.configMaps = append(r.configMaps, o)
	case *corev1.Secret:
		r.secrets = append(r.secrets, o)
	case *corev1.ServiceAccount:
		r.serviceAccounts = append(r.serviceAccounts, o)
	case *batchv1.CronJob:
		r.cronJobs = append(r.cronJobs, o)
	case *policyv1.PodDisruptionBudget:
		r.pdbs = append(r.pdbs, o)
	case *networkingv1.NetworkPolicy:
		r.netpols = append(r.netpols, o)
	default:
		return fmt.Errorf("%T: a kind these tests do not check; add it to rendering", obj)
	}
	return nil
}

// kustomizations lists every directory below this one that holds a
// kustomization.yaml, so a new overlay is checked without being listed.
func kustomizations(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == "kustomization.yaml" {
			dirs = append(dirs, filepath.Dir(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(dirs, "base") || len(dirs) < 2 {
		t.Fatalf("kustomizations found: %v; want base and at least one overlay", dirs)
	}
	return dirs
}

func render(t *testing.T, dir string) *rendering {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), abs)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	r := &rendering{}
	for _, res := range resources.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			t.Fatalf("%s: %v", res.CurId(), err)
		}
		obj, _, err := decoder.Decode(y, nil, nil)
		if err != nil {
			t.Fatalf("%s: strict decode: %v", res.CurId(), err)
		}
		if err := r.add(obj); err != nil {
			t.Fatalf("%s: %v", res.CurId(), err)
		}
	}
	return r
}

func readSecretExample(t *testing.T) *corev1.Secret {
	t.Helper()
	b, err := os.ReadFile(secretExample)
	if err != nil {
		t.Fatal(err)
	}
	obj, _, err := decoder.Decode(b, nil, nil)
	if err != nil {
		t.Fatalf("%s: strict decode: %v", secretExample, err)
	}
	s, ok := obj.(*corev1.Secret)
	if !ok {
		t.Fatalf("%s holds a %T, want a Secret", secretExample, obj)
	}
	return s
}

// pod is one pod template with where it comes from.
type pod struct {
	name string
	spec *corev1.PodSpec
}

func (r *rendering) pods() []pod {
	var ps []pod
	for _, d := range r.deployments {
		ps = append(ps, pod{"Deployment/" + d.Name, &d.Spec.Template.Spec})
	}
	for _, c := range r.cronJobs {
		ps = append(ps, pod{"CronJob/" + c.Name, &c.Spec.JobTemplate.Spec.Template.Spec})
	}
	return ps
}

// allContainers returns the init containers and containers of spec.
func allContainers(spec *corev1.PodSpec) []*corev1.Container {
	var cs []*corev1.Container
	for i := range spec.InitContainers {
		cs = append(cs, &spec.InitContainers[i])
	}
	for i := range spec.Containers {
		cs = append(cs, &spec.Containers[i])
	}
	return cs
}

// server returns the only Deployment, its proxy (a native sidecar) and the
// app containers beside it.
func (r *rendering) server(t *testing.T) (*appsv1.Deployment, *corev1.Container, []*corev1.Container) {
	t.Helper()
	if len(r.deployments) != 1 {
		t.Fatalf("%d Deployments, want 1", len(r.deployments))
	}
	d := r.deployments[0]
	spec := &d.Spec.Template.Spec
	var proxy *corev1.Container
	for i := range spec.InitContainers {
		if spec.InitContainers[i].Name == proxyContainer {
			proxy = &spec.InitContainers[i]
		}
	}
	if proxy == nil {
		t.Fatalf("Deployment/%s: no init container %q", d.Name, proxyContainer)
	}
	if proxy.RestartPolicy == nil || *proxy.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Fatalf("Deployment/%s: the proxy must be a native sidecar (restartPolicy: Always)", d.Name)
	}
	if len(spec.Containers) == 0 {
		t.Fatalf("Deployment/%s: no app container beside the proxy", d.Name)
	}
	var apps []*corev1.Container
	for i := range spec.Containers {
		apps = append(apps, &spec.Containers[i])
	}
	return d, proxy, apps
}

func (r *rendering) configMap(t *testing.T, name string) *corev1.ConfigMap {
	t.Helper()
	for _, cm := range r.configMaps {
		if cm.Name == name {
			return cm
		}
	}
	t.Fatalf("ConfigMap %q is referenced but not rendered", name)
	return nil
}

// env is a container's environment as the program sees it: envFrom config
// maps first, env entries over them. Values from secrets or fields are "".
func (r *rendering) env(t *testing.T, c *corev1.Container) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			continue
		}
		for k, v := range r.configMap(t, from.ConfigMapRef.Name).Data {
			m[from.Prefix+k] = v
		}
	}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

func port(c *corev1.Container, name string) (int32, bool) {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

// addrPort splits a LISTEN_ADDR-like "host:port" value.
func addrPort(t *testing.T, v string) (string, int32) {
	t.Helper()
	host, p, err := net.SplitHostPort(v)
	if err != nil {
		t.Fatalf("%q: %v", v, err)
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		t.Fatalf("%q: port: %v", v, err)
	}
	return host, int32(n)
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func TestManifests(t *testing.T) {
	t.Parallel()
	example := readSecretExample(t)
	for _, dir := range kustomizations(t) {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			r := render(t, dir)
			for _, c := range checks {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.check(t, r, example)
				})
			}
		})
	}
}

// checks are the invariants, each its own subtest of every kustomization.
var checks = []struct {
	name  string
	check func(t *testing.T, r *rendering, secret *corev1.Secret)
}{
	{"containers run non-root, read-only, without privileges", checkSecurityContext},
	{"containers have resource requests and a memory limit", checkResources},
	{"proxy probes liveness on healthz and readiness on readyz", checkProbes},
	{"backend binds loopback and only the proxy reaches it", checkBackendLoopback},
	{"service exposes only the proxy port", checkService},
	{"pod disruption budget selects the server pods", checkPDB},
	{"cronjob runs sessions cleanup", checkCronJob},
	{"secret is referenced, never inlined", checkSecrets},
	{"grace period covers the drain", checkGracePeriod},
	{"network policy opens only the proxy and metrics ports", checkNetworkPolicy},
	{"metrics are scraped on their own port", checkMetrics},
	{"images are pinned", checkImages},
}

func checkSecurityContext(t *testing.T, r *rendering, _ *corev1.Secret) {
	for _, p := range r.pods() {
		psc := p.spec.SecurityContext
		if p.spec.HostNetwork || p.spec.HostPID || p.spec.HostIPC {
			t.Errorf("%s: shares a host namespace", p.name)
		}
		if p.spec.AutomountServiceAccountToken == nil || *p.spec.AutomountServiceAccountToken {
			t.Errorf("%s: mounts a service account token it does not need", p.name)
		}
		for _, c := range allContainers(p.spec) {
			where := p.name + " container " + c.Name
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("%s: no securityContext", where)
				continue
			}
			nonRoot := sc.RunAsNonRoot
			if nonRoot == nil && psc != nil {
				nonRoot = psc.RunAsNonRoot
			}
			if nonRoot == nil || !*nonRoot {
				t.Errorf("%s: runAsNonRoot is not true", where)
			}
			uid := sc.RunAsUser
			if uid == nil && psc != nil {
				uid = psc.RunAsUser
			}
			if uid != nil && *uid == 0 {
				t.Errorf("%s: runs as uid 0", where)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s: readOnlyRootFilesystem is not true", where)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: allowPrivilegeEscalation is not false", where)
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s: privileged", where)
			}
			if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
				t.Errorf("%s: capabilities must be drop [ALL] and add none, got %+v", where, sc.Capabilities)
			}
			seccomp := sc.SeccompProfile
			if seccomp == nil && psc != nil {
				seccomp = psc.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: seccompProfile is not RuntimeDefault", where)
			}
		}
	}
}

func checkResources(t *testing.T, r *rendering, _ *corev1.Secret) {
	for _, p := range r.pods() {
		for _, c := range allContainers(p.spec) {
			where := p.name + " container " + c.Name
			for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if q, ok := c.Resources.Requests[name]; !ok || q.IsZero() {
					t.Errorf("%s: no %s request", where, name)
				}
			}
			limit, ok := c.Resources.Limits[corev1.ResourceMemory]
			if !ok || limit.IsZero() {
				t.Errorf("%s: no memory limit", where)
				continue
			}
			if req := c.Resources.Requests[corev1.ResourceMemory]; req.Cmp(limit) > 0 {
				t.Errorf("%s: memory request %s above limit %s", where, req.String(), limit.String())
			}
		}
	}
}

func checkProbes(t *testing.T, r *rendering, _ *corev1.Secret) {
	d, proxy, _ := r.server(t)
	httpPort, ok := port(proxy, "http")
	if !ok {
		t.Fatalf("Deployment/%s: the proxy has no port named http", d.Name)
	}
	probe := func(kind string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("proxy: no HTTP %s probe", kind)
			return
		}
		if p.HTTPGet.Path != path {
			t.Errorf("proxy: %s probe path %q, want %q", kind, p.HTTPGet.Path, path)
		}
		if pp := p.HTTPGet.Port; pp.StrVal != "http" && pp.IntVal != httpPort {
			t.Errorf("proxy: %s probe port %s, want the http port %d", kind, pp.String(), httpPort)
		}
		if p.HTTPGet.Host != "" {
			t.Errorf("proxy: %s probe sets host %q; the kubelet must probe the pod", kind, p.HTTPGet.Host)
		}
	}
	probe("liveness", proxy.LivenessProbe, "/healthz")
	probe("readiness", proxy.ReadinessProbe, "/readyz")
	if proxy.StartupProbe != nil {
		probe("startup", proxy.StartupProbe, "/healthz")
	}

	listen := r.env(t, proxy)["LISTEN_ADDR"]
	if _, p := addrPort(t, listen); p != httpPort {
		t.Errorf("proxy: LISTEN_ADDR %q does not match its http port %d", listen, httpPort)
	}
}

func checkBackendLoopback(t *testing.T, r *rendering, _ *corev1.Secret) {
	d, proxy, apps := r.server(t)
	if d.Spec.Template.Spec.HostNetwork {
		t.Fatalf("Deployment/%s: hostNetwork would put loopback on the node", d.Name)
	}
	upstream, err := url.Parse(r.env(t, proxy)["UPSTREAM_URL"])
	if err != nil {
		t.Fatalf("proxy UPSTREAM_URL: %v", err)
	}
	if upstream.Scheme != "http" || !isLoopback(upstream.Hostname()) || upstream.Port() == "" {
		t.Fatalf("proxy UPSTREAM_URL %q, want http://127.0.0.1:PORT (the backend in the same pod)", upstream)
	}
	_, upstreamPort := addrPort(t, upstream.Host)

	if len(apps) != 1 {
		t.Fatalf("Deployment/%s: %d app containers, want the one backend", d.Name, len(apps))
	}
	app := apps[0]
	// A declared port is how a Service or another pod would target it.
	if len(app.Ports) > 0 {
		t.Errorf("container %s declares ports %v; the backend must only be reachable through the proxy", app.Name, app.Ports)
	}
	env := r.env(t, app)
	switch {
	case env["LISTEN_ADDR"] != "": // the storage backend's own setting
		host, p := addrPort(t, env["LISTEN_ADDR"])
		if !isLoopback(host) || p != upstreamPort {
			t.Errorf("container %s LISTEN_ADDR %q, want 127.0.0.1:%d", app.Name, env["LISTEN_ADDR"], upstreamPort)
		}
	case env["HOST"] != "" || env["PORT"] != "": // a generic backend
		if !isLoopback(env["HOST"]) || env["PORT"] != strconv.Itoa(int(upstreamPort)) {
			t.Errorf("container %s HOST %q PORT %q, want 127.0.0.1 and %d", app.Name, env["HOST"], env["PORT"], upstreamPort)
		}
	default:
		t.Errorf("container %s: no LISTEN_ADDR or HOST/PORT saying it binds loopback", app.Name)
	}
}

func checkService(t *testing.T, r *rendering, _ *corev1.Secret) {
	d, proxy, _ := r.server(t)
	httpPort, _ := port(proxy, "http")
	if len(r.services) != 1 {
		t.Fatalf("%d Services, want exactly the proxy's", len(r.services))
	}
	s := r.services[0]
	if s.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("Service/%s: type %s; expose it through an Ingress or Gateway, not a node port", s.Name, s.Spec.Type)
	}
	if len(s.Spec.Ports) != 1 {
		t.Fatalf("Service/%s: %d ports, want only the proxy's", s.Name, len(s.Spec.Ports))
	}
	p := s.Spec.Ports[0]
	if p.Name != "http" || p.TargetPort.IntValue() != int(httpPort) {
		t.Errorf("Service/%s: port %s -> %s, want http -> the proxy's %d", s.Name, p.Name, p.TargetPort.String(), httpPort)
	}
	if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) || len(s.Spec.Selector) == 0 {
		t.Errorf("Service/%s: selector %v does not select the Deployment's pods", s.Name, s.Spec.Selector)
	}
}

func checkPDB(t *testing.T, r *rendering, _ *corev1.Secret) {
	d, _, _ := r.server(t)
	if len(r.pdbs) != 1 {
		t.Fatalf("%d PodDisruptionBudgets, want 1", len(r.pdbs))
	}
	pdb := r.pdbs[0]
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || sel.Empty() {
		t.Fatalf("PodDisruptionBudget/%s: selector: %v", pdb.Name, err)
	}
	if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("PodDisruptionBudget/%s: selector %s does not select the Deployment's pods", pdb.Name, sel)
	}
	dsel, _ := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if sel.String() != dsel.String() {
		t.Errorf("PodDisruptionBudget/%s: selector %s differs from the Deployment's %s", pdb.Name, sel, dsel)
	}
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	if replicas < 2 {
		t.Errorf("Deployment/%s: %d replica(s); a budget cannot protect a single pod", d.Name, replicas)
	}
	if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
		t.Errorf("PodDisruptionBudget/%s: neither maxUnavailable nor minAvailable", pdb.Name)
	}
	if m := pdb.Spec.MinAvailable; m != nil && m.IntValue() >= int(replicas) {
		t.Errorf("PodDisruptionBudget/%s: minAvailable %s blocks every drain with %d replicas", pdb.Name, m.String(), replicas)
	}
}

func checkCronJob(t *testing.T, r *rendering, _ *corev1.Secret) {
	_, proxy, _ := r.server(t)
	if len(r.cronJobs) != 1 {
		t.Fatalf("%d CronJobs, want the session cleanup", len(r.cronJobs))
	}
	cj := r.cronJobs[0]
	if cj.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
		t.Errorf("CronJob/%s: concurrencyPolicy %q, want Forbid", cj.Name, cj.Spec.ConcurrencyPolicy)
	}
	cs := cj.Spec.JobTemplate.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("CronJob/%s: %d containers, want 1", cj.Name, len(cs))
	}
	c := cs[0]
	// The image's entrypoint is the proxy; a command, if any, must be it.
	argv := append(slices.Clone(c.Command), c.Args...)
	if len(c.Command) > 0 && filepath.Base(c.Command[0]) != "proxy" {
		t.Errorf("CronJob/%s: command %v does not run the proxy", cj.Name, c.Command)
	}
	if !strings.HasSuffix(strings.Join(argv, " "), "sessions cleanup") {
		t.Errorf("CronJob/%s: runs %v, want the proxy's `sessions cleanup`", cj.Name, argv)
	}
	if c.Image != proxy.Image {
		t.Errorf("CronJob/%s: image %s, want the proxy's %s (same version as the server)", cj.Name, c.Image, proxy.Image)
	}
}

func checkSecrets(t *testing.T, r *rendering, secret *corev1.Secret) {
	// The kustomizations must not ship a Secret: an apply would overwrite the
	// real one with whatever is in the repository.
	for _, s := range r.secrets {
		t.Errorf("Secret/%s is rendered; real values come from a secret manager or kubectl create secret", s.Name)
	}
	known := func(name, key string) bool {
		if name != secret.Name {
			return false
		}
		_, ok := secret.StringData[key]
		return ok
	}
	// Whatever looks like a credential in a plain value is a leak into the
	// repository and into `kubectl get -o yaml`.
	leak := func(v string) bool {
		v = strings.ToLower(v)
		return strings.Contains(v, "postgres://") || strings.Contains(v, "postgresql://") || strings.Contains(v, "private key")
	}
	for _, cm := range r.configMaps {
		for k, v := range cm.Data {
			if leak(v) {
				t.Errorf("ConfigMap/%s: %s holds a credential; put it in the Secret", cm.Name, k)
			}
		}
	}
	for _, p := range r.pods() {
		mounted := map[string]string{} // volume name -> secret name
		for _, v := range p.spec.Volumes {
			if v.Secret == nil {
				continue
			}
			mounted[v.Name] = v.Secret.SecretName
			for _, item := range v.Secret.Items {
				if !known(v.Secret.SecretName, item.Key) {
					t.Errorf("%s: volume %s mounts %s/%s, which %s does not define", p.name, v.Name, v.Secret.SecretName, item.Key, secretExample)
				}
			}
		}
		for _, c := range allContainers(p.spec) {
			where := p.name + " container " + c.Name
			for _, e := range c.Env {
				if e.Value != "" && leak(e.Value) {
					t.Errorf("%s: %s holds a credential inline", where, e.Name)
				}
				if e.Name == "DATABASE_URL" && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
					t.Errorf("%s: DATABASE_URL does not come from a Secret", where)
				}
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					ref := e.ValueFrom.SecretKeyRef
					if !known(ref.Name, ref.Key) {
						t.Errorf("%s: %s reads %s/%s, which %s does not define", where, e.Name, ref.Name, ref.Key, secretExample)
					}
				}
			}
			// A proxy that reads a key file must find it on a Secret mount.
			if c.Name == proxyContainer {
				keyFile := r.env(t, c)["SIGNING_KEY_FILE"]
				if keyFile == "" {
					t.Errorf("%s: SIGNING_KEY_FILE unset; every replica must sign with the same key", where)
					continue
				}
				onSecret := slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
					_, ok := mounted[m.Name]
					return ok && m.ReadOnly && strings.HasPrefix(keyFile, strings.TrimSuffix(m.MountPath, "/")+"/")
				})
				if !onSecret {
					t.Errorf("%s: SIGNING_KEY_FILE %s is not on a read-only Secret mount", where, keyFile)
				}
			}
		}
	}
}

func checkGracePeriod(t *testing.T, r *rendering, _ *corev1.Secret) {
	d, proxy, apps := r.server(t)
	spec := d.Spec.Template.Spec
	if spec.TerminationGracePeriodSeconds == nil {
		t.Fatalf("Deployment/%s: terminationGracePeriodSeconds unset (30 s default)", d.Name)
	}
	grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	// The app containers stop first (preStop sleep, then their drain); the
	// proxy, a native sidecar, gets SIGTERM once they have exited.
	var appStop time.Duration
	for _, c := range apps {
		stop := drainDeadline
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			stop += time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		}
		appStop = max(appStop, stop)
	}
	if proxy.Lifecycle != nil && proxy.Lifecycle.PreStop != nil {
		t.Errorf("proxy: a preStop hook delays the drain it already does on SIGTERM")
	}
	if want := appStop + drainDeadline; grace < want {
		t.Errorf("Deployment/%s: grace period %s, want >= %s (apps %s, then the proxy's %s drain)", d.Name, grace, want, appStop, drainDeadline)
	}
	if s := d.Spec.Strategy.RollingUpdate; s == nil || s.MaxUnavailable == nil || s.MaxUnavailable.IntValue() != 0 {
		t.Errorf("Deployment/%s: rolling update must keep maxUnavailable 0, so an old pod stops only once a new one is ready", d.Name)
	}
}

func checkNetworkPolicy(t *testing.T, r *rendering, _ *corev1.Secret) {
	d, proxy, _ := r.server(t)
	httpPort, _ := port(proxy, "http")
	metricsPort, _ := port(proxy, "metrics")
	if len(r.netpols) == 0 {
		t.Fatal("no NetworkPolicy")
	}
	var selected bool
	for _, np := range r.netpols {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			t.Fatalf("NetworkPolicy/%s: %v", np.Name, err)
		}
		if sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			continue
		}
		selected = true
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			t.Errorf("NetworkPolicy/%s: policyTypes %v, want Ingress and Egress", np.Name, np.Spec.PolicyTypes)
		}
		for _, cj := range r.cronJobs {
			if !sel.Matches(labels.Set(cj.Spec.JobTemplate.Spec.Template.Labels)) {
				t.Errorf("NetworkPolicy/%s: does not cover CronJob/%s's pods", np.Name, cj.Name)
			}
		}
		var openHTTP, scopedMetrics bool
		for _, rule := range np.Spec.Ingress {
			if len(rule.Ports) == 0 {
				t.Errorf("NetworkPolicy/%s: an ingress rule opens every port", np.Name)
			}
			for _, p := range rule.Ports {
				switch {
				case p.Port != nil && p.Port.IntValue() == int(httpPort):
					openHTTP = true
				case p.Port != nil && p.Port.IntValue() == int(metricsPort):
					if len(rule.From) == 0 {
						t.Errorf("NetworkPolicy/%s: metrics port open to everyone", np.Name)
					}
					for _, peer := range rule.From {
						if peer.NamespaceSelector == nil || peer.IPBlock != nil {
							t.Errorf("NetworkPolicy/%s: metrics port open beyond a monitoring namespace", np.Name)
						}
					}
					scopedMetrics = true
				default:
					t.Errorf("NetworkPolicy/%s: opens port %v, neither the proxy's nor metrics", np.Name, p.Port)
				}
			}
		}
		if !openHTTP || !scopedMetrics {
			t.Errorf("NetworkPolicy/%s: want ingress to %d and to %d from monitoring; http %v, metrics %v", np.Name, httpPort, metricsPort, openHTTP, scopedMetrics)
		}
		egress := map[int]bool{}
		for _, rule := range np.Spec.Egress {
			if len(rule.Ports) == 0 {
				t.Errorf("NetworkPolicy/%s: an egress rule allows every port", np.Name)
			}
			for _, p := range rule.Ports {
				if p.Port != nil {
					egress[p.Port.IntValue()] = true
				}
			}
		}
		if !egress[53] || !egress[5432] {
			t.Errorf("NetworkPolicy/%s: egress ports %v, want DNS (53) and PostgreSQL (5432)", np.Name, egress)
		}
	}
	if !selected {
		t.Errorf("no NetworkPolicy selects Deployment/%s's pods", d.Name)
	}
}

func checkMetrics(t *testing.T, r *rendering, _ *corev1.Secret) {
	d, proxy, _ := r.server(t)
	metricsPort, ok := port(proxy, "metrics")
	if !ok {
		t.Fatal("proxy: no port named metrics")
	}
	if _, p := addrPort(t, r.env(t, proxy)["METRICS_ADDR"]); p != metricsPort {
		t.Errorf("proxy: METRICS_ADDR port %d, want the metrics port %d", p, metricsPort)
	}
	if httpPort, _ := port(proxy, "http"); httpPort == metricsPort {
		t.Errorf("proxy: metrics on the public port %d", httpPort)
	}
	a := d.Spec.Template.Annotations
	if a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != strconv.Itoa(int(metricsPort)) || a["prometheus.io/path"] != "/metrics" {
		t.Errorf("Deployment/%s: scrape annotations %v, want port %d path /metrics", d.Name, a, metricsPort)
	}
}

func checkImages(t *testing.T, r *rendering, _ *corev1.Secret) {
	for _, p := range r.pods() {
		for _, c := range allContainers(p.spec) {
			ref := c.Image
			name := ref[strings.LastIndex(ref, "/")+1:]
			if !strings.Contains(name, ":") && !strings.Contains(ref, "@") || strings.HasSuffix(ref, ":latest") {
				t.Errorf("%s container %s: image %q is not pinned to a version", p.name, c.Name, ref)
			}
			if c.ImagePullPolicy == corev1.PullNever {
				t.Errorf("%s container %s: imagePullPolicy Never", p.name, c.Name)
			}
		}
	}
}
