// Package forwardauth_test checks the forward-auth examples: it renders
// every kustomization below ./kubernetes the way `kubectl apply -k` would,
// decodes each object strictly (the Kubernetes API types, and the Traefik
// fields the examples use), and checks what the setup relies on: the
// proxy deployed as in deploy/kubernetes/base minus the backend, ingresses
// that ask the proxy's /api/auth/verify and copy exactly the identity
// headers it answers, and a method and URI that the client cannot choose.
// The nginx and Caddy examples run for real in the end-to-end tests.
package forwardauth_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Where the pieces are, relative to this directory.
const (
	baseDir     = "../kubernetes/base"
	openAPIFile = "../../docs/openapi.yaml"
)

// drainDeadline is how long the proxy may take, after SIGTERM, to finish
// the requests in flight.
const drainDeadline = 20 * time.Second

// verifyPath is the proxy's forward-auth endpoint.
const verifyPath = "/api/auth/verify"

// decoder decodes strictly into the Kubernetes types registered below: an
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

// The Traefik objects, with the fields the examples use: decoded strictly,
// a misspelt field is an error rather than a setting Traefik ignores.
type traefikMiddleware struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		ForwardAuth *struct {
			Address             string   `json:"address"`
			TrustForwardHeader  bool     `json:"trustForwardHeader"`
			AuthRequestHeaders  []string `json:"authRequestHeaders"`
			AuthResponseHeaders []string `json:"authResponseHeaders"`
		} `json:"forwardAuth"`
	} `json:"spec"`
}

type traefikIngressRoute struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		EntryPoints []string `json:"entryPoints"`
		Routes      []struct {
			Kind        string `json:"kind"`
			Match       string `json:"match"`
			Middlewares []struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"middlewares"`
			Services []struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
				Port      any    `json:"port"`
			} `json:"services"`
		} `json:"routes"`
		TLS *struct {
			SecretName string `json:"secretName"`
		} `json:"tls"`
	} `json:"spec"`
}

// rendering is the decoded output of one kustomization.
type rendering struct {
	deployments   []*appsv1.Deployment
	services      []*corev1.Service
	configMaps    []*corev1.ConfigMap
	secrets       []*corev1.Secret
	ingresses     []*networkingv1.Ingress
	middlewares   []*traefikMiddleware
	ingressRoutes []*traefikIngressRoute
	// others are the objects compared with the base as they are.
	others map[string]runtime.Object // "Kind/namespace/name"
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
	r := &rendering{others: map[string]runtime.Object{}}
	for _, res := range resources.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			t.Fatalf("%s: %v", res.CurId(), err)
		}
		if strings.HasPrefix(res.GetApiVersion(), "traefik.io/") {
			r.addTraefik(t, res.CurId().String(), res.GetKind(), y)
			continue
		}
		obj, _, err := decoder.Decode(y, nil, nil)
		if err != nil {
			t.Fatalf("%s: strict decode: %v", res.CurId(), err)
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			r.deployments = append(r.deployments, o)
		case *corev1.Service:
			r.services = append(r.services, o)
		case *corev1.ConfigMap:
			r.configMaps = append(r.configMaps, o)
		case *corev1.Secret:
			r.secrets = append(r.secrets, o)
		case *networkingv1.Ingress:
			r.ingresses = append(r.ingresses, o)
		case *corev1.ServiceAccount, *batchv1.CronJob, *policyv1.PodDisruptionBudget, *networkingv1.NetworkPolicy:
			m := o.(metav1.Object)
			r.others[fmt.Sprintf("%T/%s/%s", o, m.GetNamespace(), m.GetName())] = o
		default:
			t.Fatalf("%s: %T, a kind these tests do not check; add it to rendering", res.CurId(), obj)
		}
	}
	return r
}

func (r *rendering) addTraefik(t *testing.T, id, kind string, y []byte) {
	t.Helper()
	switch kind {
	case "Middleware":
		var m traefikMiddleware
		if err := yaml.UnmarshalStrict(y, &m); err != nil {
			t.Fatalf("%s: strict decode: %v", id, err)
		}
		r.middlewares = append(r.middlewares, &m)
	case "IngressRoute":
		var ir traefikIngressRoute
		if err := yaml.UnmarshalStrict(y, &ir); err != nil {
			t.Fatalf("%s: strict decode: %v", id, err)
		}
		r.ingressRoutes = append(r.ingressRoutes, &ir)
	default:
		t.Fatalf("%s: Traefik %s, a kind these tests do not check", id, kind)
	}
}

// kustomizations lists every directory below ./kubernetes that holds a
// kustomization.yaml, so a new example is checked without being listed.
func kustomizations(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir("kubernetes", func(path string, d fs.DirEntry, err error) error {
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
	for _, want := range []string{"kubernetes/proxy", "kubernetes/ingress-nginx", "kubernetes/traefik"} {
		if !slices.Contains(dirs, want) {
			t.Fatalf("kustomizations found: %v; want %s among them", dirs, want)
		}
	}
	return dirs
}

// documentedIdentity returns the X-Auth-* headers of the forward-auth 200
// in the API document: what the proxy answers, and so exactly what an
// ingress must copy.
func documentedIdentity(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(openAPIFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", openAPIFile, err)
	}
	headers, ok := dig(doc, "paths", verifyPath, "get", "responses", "200", "headers").(map[string]any)
	if !ok {
		t.Fatalf("%s documents no headers of GET %s's 200", openAPIFile, verifyPath)
	}
	var names []string
	for name := range headers {
		if strings.HasPrefix(name, "X-Auth-") {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		t.Fatalf("%s: GET %s's 200 has no X-Auth-* header", openAPIFile, verifyPath)
	}
	sort.Strings(names)
	return names
}

func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// sameHeaders reports whether list names exactly the headers of want, each
// once, in any order and case.
func sameHeaders(list, want []string) bool {
	got := make([]string, len(list))
	for i, h := range list {
		got[i] = strings.ToLower(strings.TrimSpace(h))
	}
	w := make([]string, len(want))
	for i, h := range want {
		w[i] = strings.ToLower(h)
	}
	sort.Strings(got)
	sort.Strings(w)
	return slices.Equal(got, w)
}

// server is a rendering's proxy: its one Deployment, its container and its
// Service.
type server struct {
	deployment *appsv1.Deployment
	proxy      *corev1.Container
	service    *corev1.Service
	httpPort   int32
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
// maps first, env entries over them.
func (r *rendering) env(t *testing.T, c *corev1.Container) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef != nil {
			for k, v := range r.configMap(t, from.ConfigMapRef.Name).Data {
				m[from.Prefix+k] = v
			}
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

// baseProxy is the base's proxy container, as the forward-auth Deployment
// must run it.
func baseProxy(t *testing.T, base *rendering) *corev1.Container {
	t.Helper()
	if len(base.deployments) != 1 {
		t.Fatalf("base: %d Deployments, want 1", len(base.deployments))
	}
	for i, c := range base.deployments[0].Spec.Template.Spec.InitContainers {
		if c.Name == "proxy" {
			return &base.deployments[0].Spec.Template.Spec.InitContainers[i]
		}
	}
	t.Fatal("base: no proxy container")
	return nil
}

// theServer returns the proxy of a forward-auth rendering: one Deployment
// with one container, and one Service in front of it.
func (r *rendering) theServer(t *testing.T) server {
	t.Helper()
	if len(r.deployments) != 1 || len(r.services) != 1 {
		t.Fatalf("%d Deployments and %d Services, want the proxy's one each", len(r.deployments), len(r.services))
	}
	d := r.deployments[0]
	spec := d.Spec.Template.Spec
	if len(spec.InitContainers) != 0 || len(spec.Containers) != 1 || spec.Containers[0].Name != "proxy" {
		t.Fatalf("Deployment/%s: want the proxy as its one container, nothing beside it", d.Name)
	}
	s := server{deployment: d, proxy: &d.Spec.Template.Spec.Containers[0], service: r.services[0]}
	var ok bool
	if s.httpPort, ok = port(s.proxy, "http"); !ok {
		t.Fatal("proxy: no port named http")
	}
	return s
}

// reachesProxy reports whether ref, a port of the Service by number or by
// name, leads to the proxy's http port.
func (s server) reachesProxy(ref string) bool {
	for _, p := range s.service.Spec.Ports {
		if (p.Name == ref || strconv.Itoa(int(p.Port)) == ref) && p.TargetPort.IntValue() == int(s.httpPort) {
			return true
		}
	}
	return false
}

// checkVerifyURL checks that an ingress's forward-auth address is the
// proxy's /api/auth/verify, through its Service's cluster DNS name and port.
func (s server) checkVerifyURL(t *testing.T, where, address string) {
	t.Helper()
	u, err := url.Parse(address)
	if err != nil {
		t.Fatalf("%s: %q: %v", where, address, err)
	}
	host := s.service.Name + "." + s.service.Namespace + ".svc.cluster.local"
	if u.Scheme != "http" || u.Hostname() != host || u.Path != verifyPath || u.RawQuery != "" || !s.reachesProxy(u.Port()) {
		t.Errorf("%s: %q, want http://%s:PORT%s with the Service's port to the proxy", where, address, host, verifyPath)
	}
}

func TestIngressKustomizations(t *testing.T) {
	t.Parallel()
	base := render(t, baseDir)
	identity := documentedIdentity(t)
	for _, dir := range kustomizations(t) {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			r := render(t, dir)
			s := r.theServer(t)
			t.Run("the proxy runs as in the base, without the backend", func(t *testing.T) {
				checkProxyAsBase(t, r, base, s)
			})
			t.Run("the proxy forwards nothing itself", func(t *testing.T) {
				checkForwardsNothing(t, r, s)
			})
			t.Run("the other objects are the base's", func(t *testing.T) {
				checkOthersAsBase(t, r, base)
			})
			if len(r.ingresses) > 0 {
				t.Run("ingress-nginx asks the proxy and copies the identity", func(t *testing.T) {
					checkIngressNginx(t, r, s, identity)
				})
			}
			if len(r.middlewares)+len(r.ingressRoutes) > 0 {
				t.Run("Traefik asks the proxy and copies the identity", func(t *testing.T) {
					checkTraefik(t, r, s, identity)
				})
			}
		})
	}
}

func checkProxyAsBase(t *testing.T, r, base *rendering, s server) {
	want := baseProxy(t, base).DeepCopy()
	want.RestartPolicy = nil // a native sidecar there, the pod's container here
	got := s.proxy.DeepCopy()
	// The config maps' names carry a hash of their contents; their data
	// are compared below.
	want.EnvFrom, got.EnvFrom = nil, nil
	if !equality.Semantic.DeepEqual(got, want) {
		gj, _ := json.MarshalIndent(got, "", " ")
		wj, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("proxy container differs from the base's (image, args, ports, env, probes, resources, security):\n got %s\nwant %s", gj, wj)
	}
	gotEnv, wantEnv := r.env(t, s.proxy), base.env(t, baseProxy(t, base))
	for _, k := range []string{"UPSTREAM_URL", "PUBLIC_ROUTES", "ADMIN_ROUTES"} {
		delete(gotEnv, k)
		delete(wantEnv, k)
	}
	if !equality.Semantic.DeepEqual(gotEnv, wantEnv) {
		t.Errorf("proxy settings %v, want the base's %v (UPSTREAM_URL and the route rules aside)", gotEnv, wantEnv)
	}

	bd := base.deployments[0]
	d := s.deployment
	gs, bs := d.Spec.Template.Spec, bd.Spec.Template.Spec
	if !equality.Semantic.DeepEqual(gs.SecurityContext, bs.SecurityContext) || !equality.Semantic.DeepEqual(gs.Volumes, bs.Volumes) ||
		gs.ServiceAccountName != bs.ServiceAccountName || !equality.Semantic.DeepEqual(gs.AutomountServiceAccountToken, bs.AutomountServiceAccountToken) ||
		!equality.Semantic.DeepEqual(gs.TopologySpreadConstraints, bs.TopologySpreadConstraints) || gs.HostNetwork {
		t.Errorf("Deployment/%s: pod security context, volumes, service account or spread differ from the base's", d.Name)
	}
	if !equality.Semantic.DeepEqual(d.Spec.Template.ObjectMeta, bd.Spec.Template.ObjectMeta) || !equality.Semantic.DeepEqual(d.Spec.Selector, bd.Spec.Selector) ||
		!equality.Semantic.DeepEqual(d.Spec.Replicas, bd.Spec.Replicas) || !equality.Semantic.DeepEqual(d.Spec.Strategy, bd.Spec.Strategy) {
		t.Errorf("Deployment/%s: labels, annotations, replicas or rollout differ from the base's", d.Name)
	}
	if g := gs.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= drainDeadline {
		t.Errorf("Deployment/%s: grace period unset or not above the proxy's %s drain", d.Name, drainDeadline)
	}
	if !equality.Semantic.DeepEqual(s.service, findService(t, base, s.service.Name)) {
		t.Errorf("Service/%s differs from the base's", s.service.Name)
	}
	for _, sec := range r.secrets {
		t.Errorf("Secret/%s is rendered; real values come from a secret manager or kubectl create secret", sec.Name)
	}
}

func findService(t *testing.T, r *rendering, name string) *corev1.Service {
	t.Helper()
	for _, s := range r.services {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no Service %s", name)
	return nil
}

// checkForwardsNothing: in forward-auth mode the ingress forwards, so the
// proxy's own UPSTREAM_URL must lead nowhere (a request that reaches it on
// another path than its own routes is not passed to anything), while still
// being the URL the proxy requires.
func checkForwardsNothing(t *testing.T, r *rendering, s server) {
	raw := r.env(t, s.proxy)["UPSTREAM_URL"]
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Port() == "" {
		t.Fatalf("proxy UPSTREAM_URL %q: want an http URL with a port", raw)
	}
	ip := net.ParseIP(u.Hostname())
	if ip == nil || !ip.IsLoopback() {
		t.Errorf("proxy UPSTREAM_URL %q: want a loopback address, inside the pod", raw)
	}
	for _, p := range s.proxy.Ports {
		if strconv.Itoa(int(p.ContainerPort)) == u.Port() {
			t.Errorf("proxy UPSTREAM_URL %q is the proxy's own %s port", raw, p.Name)
		}
	}
}

// checkOthersAsBase: the service account, budget, network policy and
// cleanup job are the base's, unchanged, and the backend's settings are gone.
func checkOthersAsBase(t *testing.T, r, base *rendering) {
	if len(r.others) != len(base.others) {
		t.Errorf("%d other objects, the base has %d", len(r.others), len(base.others))
	}
	for id, want := range base.others {
		got, ok := r.others[id]
		if !ok {
			t.Errorf("%s of the base is missing", id)
			continue
		}
		if !equality.Semantic.DeepEqual(got, want) {
			t.Errorf("%s differs from the base's", id)
		}
	}
	for _, cm := range r.configMaps {
		if strings.HasPrefix(cm.Name, "authsidecar-storage-backend") {
			t.Errorf("ConfigMap/%s: the storage backend's settings, without the backend", cm.Name)
		}
	}
}

// ingress-nginx's annotations.
const (
	annAuthURL          = "nginx.ingress.kubernetes.io/auth-url"
	annAuthHeaders      = "nginx.ingress.kubernetes.io/auth-response-headers"
	annAuthProxyHeaders = "nginx.ingress.kubernetes.io/auth-proxy-set-headers"
)

func checkIngressNginx(t *testing.T, r *rendering, s server, identity []string) {
	var authed, own []*networkingv1.Ingress
	for _, ing := range r.ingresses {
		a := ing.Annotations
		for k := range a {
			// A cached 200 would let a logged-out token through until it
			// expires; a snippet can undo every header set here.
			if strings.Contains(k, "auth-cache") || strings.HasSuffix(k, "-snippet") {
				t.Errorf("Ingress/%s: %s", ing.Name, k)
			}
		}
		if a[annAuthURL] != "" {
			authed = append(authed, ing)
		} else {
			own = append(own, ing)
		}
	}
	if len(authed) == 0 || len(own) == 0 {
		t.Fatalf("%d Ingresses asking the proxy and %d to its own routes; want both", len(authed), len(own))
	}
	for _, ing := range authed {
		where := "Ingress/" + ing.Name
		s.checkVerifyURL(t, where+" "+annAuthURL, ing.Annotations[annAuthURL])
		if h := strings.Split(ing.Annotations[annAuthHeaders], ","); !sameHeaders(h, identity) {
			t.Errorf("%s %s: %v, want exactly %v", where, annAuthHeaders, h, identity)
		}
		checkVerifyHeaders(t, r, ing)
		eachBackend(ing, func(path string, b networkingv1.IngressServiceBackend) {
			if ing.Namespace == s.service.Namespace && b.Name == s.service.Name {
				t.Errorf("%s: %s goes to the proxy through its own check", where, path)
			}
		})
	}
	hosts := func(ing *networkingv1.Ingress) []string {
		var h []string
		for _, rule := range ing.Spec.Rules {
			h = append(h, rule.Host)
		}
		return h
	}
	for _, ing := range own {
		where := "Ingress/" + ing.Name
		if ing.Namespace != s.service.Namespace || !slices.Equal(hosts(ing), hosts(authed[0])) ||
			!equality.Semantic.DeepEqual(ing.Spec.IngressClassName, authed[0].Spec.IngressClassName) || len(ing.Spec.TLS) == 0 {
			t.Errorf("%s: want the proxy's namespace, with the host, class and TLS of Ingress/%s", where, authed[0].Name)
		}
		var paths []string
		eachBackend(ing, func(path string, b networkingv1.IngressServiceBackend) {
			paths = append(paths, path)
			ref := b.Port.Name
			if ref == "" {
				ref = strconv.Itoa(int(b.Port.Number))
			}
			if b.Name != s.service.Name || !s.reachesProxy(ref) {
				t.Errorf("%s: %s goes to %s:%s without the proxy's check; only the proxy's own routes may", where, path, b.Name, ref)
			}
		})
		for _, p := range []string{"/api/auth/", "/api/admin/", "/.well-known/jwks.json"} {
			if !slices.Contains(paths, p) {
				t.Errorf("%s: no path %s to the proxy (clients log in there)", where, p)
			}
		}
	}
}

// checkVerifyHeaders: ingress-nginx passes the client's headers on to the
// auth subrequest and sets X-Original-Method and X-Original-URL, but
// neither X-Original-URI nor the X-Forwarded-Method and X-Forwarded-Uri
// that the proxy reads first. The auth-proxy-set-headers ConfigMap must set
// every one of them from nginx's own variables, or the client would choose
// the method and URI the proxy judges.
func checkVerifyHeaders(t *testing.T, r *rendering, ing *networkingv1.Ingress) {
	ref := ing.Annotations[annAuthProxyHeaders]
	ns, name, ok := strings.Cut(ref, "/")
	if !ok || ns != ing.Namespace {
		t.Fatalf("Ingress/%s %s: %q, want a ConfigMap of the Ingress's namespace (%s/NAME)", ing.Name, annAuthProxyHeaders, ref, ing.Namespace)
	}
	var data map[string]string
	for _, cm := range r.configMaps {
		if cm.Namespace == ns && cm.Name == name {
			data = cm.Data
		}
	}
	if data == nil {
		t.Fatalf("Ingress/%s: ConfigMap %s is not rendered", ing.Name, ref)
	}
	for h, v := range map[string]string{
		"X-Forwarded-Method": "$request_method", "X-Forwarded-Uri": "$request_uri",
		"X-Original-Method": "$request_method", "X-Original-URI": "$request_uri",
	} {
		if data[h] != v {
			t.Errorf("ConfigMap %s: %s is %q, want %s", ref, h, data[h], v)
		}
	}
}

func eachBackend(ing *networkingv1.Ingress, fn func(path string, b networkingv1.IngressServiceBackend)) {
	if b := ing.Spec.DefaultBackend; b != nil && b.Service != nil {
		fn("(default)", *b.Service)
	}
	for _, rule := range ing.Spec.Rules {
		if rule.HTTP == nil {
			continue
		}
		for _, p := range rule.HTTP.Paths {
			if p.Backend.Service != nil {
				fn(p.Path, *p.Backend.Service)
			}
		}
	}
}

func checkTraefik(t *testing.T, r *rendering, s server, identity []string) {
	type key struct{ ns, name string }
	auth := map[key]bool{}
	for _, m := range r.middlewares {
		where := "Middleware/" + m.Metadata.Name
		fa := m.Spec.ForwardAuth
		if fa == nil {
			t.Errorf("%s: not a forwardAuth middleware", where)
			continue
		}
		auth[key{m.Metadata.Namespace, m.Metadata.Name}] = true
		s.checkVerifyURL(t, where+" forwardAuth.address", fa.Address)
		if !sameHeaders(fa.AuthResponseHeaders, identity) {
			t.Errorf("%s authResponseHeaders: %v, want exactly %v", where, fa.AuthResponseHeaders, identity)
		}
		// Trusted, a client's X-Forwarded-Method and -Uri would be what
		// the proxy judges.
		if fa.TrustForwardHeader {
			t.Errorf("%s: trustForwardHeader lets the client choose the method and URI the proxy judges", where)
		}
		if len(fa.AuthRequestHeaders) > 0 && !slices.ContainsFunc(fa.AuthRequestHeaders, func(h string) bool { return strings.EqualFold(h, "Authorization") }) {
			t.Errorf("%s authRequestHeaders %v: the token (Authorization) never reaches the proxy", where, fa.AuthRequestHeaders)
		}
	}
	var checked, own int
	for _, ir := range r.ingressRoutes {
		for _, route := range ir.Spec.Routes {
			where := fmt.Sprintf("IngressRoute/%s %q", ir.Metadata.Name, route.Match)
			checks := slices.ContainsFunc(route.Middlewares, func(m struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			}) bool {
				ns := m.Namespace
				if ns == "" {
					ns = ir.Metadata.Namespace
				}
				return auth[key{ns, m.Name}]
			})
			for _, svc := range route.Services {
				ns := svc.Namespace
				if ns == "" {
					ns = ir.Metadata.Namespace
				}
				toProxy := ns == s.service.Namespace && svc.Name == s.service.Name
				switch {
				case checks && toProxy:
					t.Errorf("%s: goes to the proxy through its own check", where)
				case checks:
					checked++
				case !toProxy:
					t.Errorf("%s: goes to %s without the proxy's check; only the proxy's own routes may", where, svc.Name)
				case !s.reachesProxy(fmt.Sprint(svc.Port)):
					t.Errorf("%s: port %v is not the Service's port to the proxy", where, svc.Port)
				default:
					own++
					for _, p := range []string{"PathPrefix(`/api/auth/`)", "PathPrefix(`/api/admin/`)", "Path(`/.well-known/jwks.json`)"} {
						if !strings.Contains(route.Match, p) {
							t.Errorf("%s: no %s to the proxy (clients log in there)", where, p)
						}
					}
				}
			}
		}
	}
	if checked == 0 || own == 0 {
		t.Errorf("%d routes through the forward-auth middleware and %d to the proxy's own routes; want both", checked, own)
	}
}

// TestIngressExamplesCopyTheIdentity checks that the nginx and Caddy examples copy
// exactly the identity headers the proxy answers; the end-to-end tests run
// them.
func TestIngressExamplesCopyTheIdentity(t *testing.T) {
	t.Parallel()
	identity := documentedIdentity(t)

	nginx, err := os.ReadFile("nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	// auth_request_set $var $upstream_http_x_auth_…; then proxy_set_header X-Auth-… $var;
	fromVerify := map[string]string{} // variable -> response header (nginx's spelling)
	for _, m := range regexp.MustCompile(`auth_request_set\s+\$(\w+)\s+\$upstream_http_(\w+);`).FindAllStringSubmatch(string(nginx), -1) {
		fromVerify[m[1]] = m[2]
	}
	var set []string
	for _, m := range regexp.MustCompile(`proxy_set_header\s+(X-Auth-[\w-]+)\s+\$(\w+);`).FindAllStringSubmatch(string(nginx), -1) {
		set = append(set, m[1])
		want := strings.ReplaceAll(strings.ToLower(m[1]), "-", "_")
		if fromVerify[m[2]] != want {
			t.Errorf("nginx.conf: %s is set from $%s, which is not the verify answer's %s", m[1], m[2], m[1])
		}
	}
	if !sameHeaders(set, identity) {
		t.Errorf("nginx.conf sets %v on the backend's request, want exactly %v", set, identity)
	}

	caddy, err := os.ReadFile("Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*copy_headers\s+(.+)$`).FindAllStringSubmatch(string(caddy), -1)
	if len(m) != 1 {
		t.Fatalf("Caddyfile: %d copy_headers lines, want 1", len(m))
	}
	if h := strings.Fields(m[0][1]); !sameHeaders(h, identity) {
		t.Errorf("Caddyfile copies %v, want exactly %v", h, identity)
	}
}
