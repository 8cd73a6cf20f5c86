package e2e

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// openAPIFile is the API document, relative to this package.
const openAPIFile = "../docs/openapi.yaml"

// The servers of the document: the proxy, and the storage-backend behind it.
const (
	proxyServer   = "http://127.0.0.1:8080"
	backendServer = "http://127.0.0.1:9000"
)

// Where the two programs register their routes.
const (
	gatewayDir = "../proxy/internal/gateway"
	httpapiDir = "../storage-backend/internal/httpapi"
)

// loadOpenAPI loads and validates the document. Each call returns a
// document of its own, free to change.
func loadOpenAPI() (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromFile(openAPIFile)
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, err
	}
	return doc, nil
}

func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	doc, err := loadOpenAPI()
	if err != nil {
		t.Fatalf("%s: %v", openAPIFile, err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q, want 3.x", doc.OpenAPI)
	}
	var urls []string
	for _, s := range doc.Servers {
		urls = append(urls, s.URL)
	}
	if strings.Join(urls, " ") != proxyServer+" "+backendServer {
		t.Errorf("servers %v, want the proxy (%s) and the storage-backend (%s)", urls, proxyServer, backendServer)
	}
	if doc.Components.Schemas["Error"] == nil {
		t.Error("no shared Error schema")
	}
}

// TestOpenAPIRoutes compares the routes both programs register, read from
// their source, with the operations of the document, both ways, and checks
// that each operation names the servers that answer it.
func TestOpenAPIRoutes(t *testing.T) {
	t.Parallel()
	doc, err := loadOpenAPI()
	if err != nil {
		t.Fatalf("%s: %v", openAPIFile, err)
	}
	proxy := proxyRoutes(t)
	backend := backendRoutes(t)
	if len(proxy) == 0 || len(backend) == 0 {
		t.Fatalf("found %d proxy and %d storage-backend routes; the extraction is broken", len(proxy), len(backend))
	}
	t.Logf("proxy: %s", strings.Join(sortedKeys(proxy), ", "))
	t.Logf("storage-backend: %s", strings.Join(sortedKeys(backend), ", "))

	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		servers := doc.Servers
		if len(item.Servers) > 0 {
			servers = item.Servers
		}
		onBackend := false
		for _, s := range servers {
			onBackend = onBackend || s.URL == backendServer
		}
		for method := range item.Operations() {
			r := method + " " + path
			documented[r] = true
			// The proxy answers every route: its own, and the backend's by
			// forwarding them. Only the backend's routes name the backend.
			if onBackend != backend[r] {
				t.Errorf("%s: lists the storage-backend server: %v; the storage-backend serves it: %v", r, onBackend, backend[r])
			}
		}
	}
	for _, set := range []struct {
		name   string
		routes map[string]bool
	}{{"proxy", proxy}, {"storage-backend", backend}} {
		for _, r := range sortedKeys(set.routes) {
			if !documented[r] {
				t.Errorf("%s serves %s, which %s does not document", set.name, r, openAPIFile)
			}
		}
	}
	for _, r := range sortedKeys(documented) {
		if !proxy[r] && !backend[r] {
			t.Errorf("%s documents %s, which neither program serves", openAPIFile, r)
		}
	}
}

// proxyRoutes reads the gateway's route(path, http.MethodX, …) and
// anyMethod(path, …) calls. A
// g.mux.Handle of an exact path would bypass route() and is an error; the
// subtree patterns ("/api/auth/", "/") are its catch-alls: 404s and the
// forwarding.
func proxyRoutes(t *testing.T) map[string]bool {
	routes := map[string]bool{}
	eachCall(t, gatewayDir, func(fset *token.FileSet, sel string, call *ast.CallExpr) {
		switch sel {
		case "route":
			if len(call.Args) < 2 {
				return
			}
			path, ok := stringLit(call.Args[0])
			method := httpMethod(call.Args[1])
			if !ok || method == "" {
				t.Errorf("%s: g.route with a path or method that is not a literal", fset.Position(call.Pos()))
				return
			}
			routes[method+" "+path] = true
		case "anyMethod":
			path, ok := stringLit(call.Args[0])
			if !ok {
				t.Errorf("%s: anyMethod with a path that is not a literal", fset.Position(call.Pos()))
				return
			}
			// Served for every method; the document lists the usual ones.
			for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
				routes[m+" "+path] = true
			}
		case "Handle", "HandleFunc":
			// route() itself calls g.mux.Handle(path, …) with a variable.
			if p, ok := stringLit(call.Args[0]); ok && !strings.HasSuffix(p, "/") {
				t.Errorf("%s: %s(%s) registers an exact path without g.route; use g.route (and document it)",
					fset.Position(call.Pos()), sel, p)
			}
		}
	})
	return routes
}

// backendRoutes reads the storage-backend's mux.Handle("METHOD /path", …)
// patterns. Patterns without a method are its 405 catch-alls, "/" its 404.
func backendRoutes(t *testing.T) map[string]bool {
	routes := map[string]bool{}
	eachCall(t, httpapiDir, func(fset *token.FileSet, sel string, call *ast.CallExpr) {
		if sel != "Handle" && sel != "HandleFunc" {
			return
		}
		pattern, ok := stringLit(call.Args[0])
		if !ok {
			t.Errorf("%s: a mux pattern that is not a literal", fset.Position(call.Pos()))
			return
		}
		method, path, hasMethod := strings.Cut(pattern, " ")
		if !hasMethod {
			return
		}
		// {key...} takes the rest of the path; OpenAPI writes it {key}.
		path = strings.ReplaceAll(path, "...}", "}")
		routes[method+" "+path] = true
	})
	return routes
}

// eachCall parses the non-test Go files of dir and calls fn for every call
// of a method (x.sel(…)) with at least one argument.
func eachCall(t *testing.T, dir string, fn func(fset *token.FileSet, sel string, call *ast.CallExpr)) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s: %v", dir, err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
				fn(fset, sel.Sel.Name, call)
			}
			return true
		})
	}
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// httpMethod turns http.MethodGet into GET (or a literal "GET" into GET).
func httpMethod(e ast.Expr) string {
	if s, ok := stringLit(e); ok {
		return s
	}
	sel, ok := e.(*ast.SelectorExpr)
	if !ok || !strings.HasPrefix(sel.Sel.Name, "Method") {
		return ""
	}
	return strings.ToUpper(strings.TrimPrefix(sel.Sel.Name, "Method"))
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
