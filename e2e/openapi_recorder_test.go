package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// exchange is one request that do() sent and the answer it got, kept so
// that TestMain can check every answer against docs/openapi.yaml once all
// tests have run.
type exchange struct {
	test    string
	req     *http.Request // method, URL and headers; its body is spent
	reqBody any           // what do() was given as the body
	status  int
	header  http.Header
	body    []byte
}

// recorded holds every exchange of the run. Tests run in parallel, so
// record only appends under a lock; the checking happens after m.Run.
var recorded struct {
	sync.Mutex
	list []exchange
}

// record keeps one exchange. It is cheap: no copies, no decoding.
func record(t *testing.T, req *http.Request, reqBody any, resp *http.Response, body []byte) {
	e := exchange{test: t.Name(), req: req, reqBody: reqBody, status: resp.StatusCode, header: resp.Header, body: body}
	recorded.Lock()
	recorded.list = append(recorded.list, e)
	recorded.Unlock()
}

// checkRecorded validates every recorded answer against the document (see
// validateExchanges) and returns the exit code for TestMain: code, or 1 when
// an answer does not match.
func checkRecorded(code int) int {
	recorded.Lock()
	list := recorded.list
	recorded.Unlock()
	if len(list) == 0 {
		return code // e.g. -run selected no test that speaks HTTP
	}
	sum, err := validateExchanges(list)
	fmt.Println(sum)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: answers of the end-to-end tests do not match %s:\n%v\n", openAPIFile, err)
		return 1
	}
	return code
}

// validateExchanges checks each exchange whose path and method are a
// documented operation against that operation: its status must be
// documented, its headers and body must match. Answers on paths the
// document does not describe (forwarded paths, hostile paths of the
// security tests) are skipped, as are HEAD requests (no body). A documented
// path with an undocumented method must answer an error, in the Error
// shape. It returns a one-line summary and the failures, if any.
func validateExchanges(list []exchange) (string, error) {
	doc, err := loadOpenAPI()
	if err != nil {
		return "openapi: cannot load the document", err
	}
	// Route by path alone, whichever host the test used: a test's proxy and
	// backend listen on random ports, and the storage paths are the same
	// on the proxy as on the backend.
	doc.Servers = nil
	for _, item := range doc.Paths.Map() {
		item.Servers = nil
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return "openapi: cannot build a router", err
	}
	errorSchema := doc.Components.Schemas["Error"].Value

	var (
		failures  []string
		validated int
		wrongVerb int
		skipped   int
		seen      = map[string]int{} // "METHOD /path status" → count
	)
	fail := func(e exchange, what string, err error) {
		body := string(e.body)
		if len(body) > 300 {
			body = body[:300] + "…"
		}
		msg := fmt.Sprintf("  %s: %s %s → %d: %s", e.test, e.req.Method, e.req.URL.RequestURI(), e.status, what)
		if err != nil {
			msg += ": " + strings.ReplaceAll(err.Error(), "\n", "\n      ")
		}
		failures = append(failures, msg+"\n      body: "+body)
	}
	ctx := context.Background()
	for _, e := range list {
		if e.req.Method == http.MethodHead {
			skipped++
			continue
		}
		route, params, err := router.FindRoute(e.req)
		switch {
		case errors.Is(err, routers.ErrPathNotFound):
			skipped++
			continue
		case errors.Is(err, routers.ErrMethodNotAllowed):
			// Not an operation of the document: whoever answers (the
			// proxy's 405, its 401 before forwarding, the backend's 405)
			// must refuse it with the error body.
			wrongVerb++
			switch {
			case e.status < 400:
				fail(e, "a method the document does not describe on a documented path succeeded", nil)
			case e.status == http.StatusMethodNotAllowed && e.header.Get("Allow") == "":
				fail(e, "405 without the Allow header of MethodNotAllowed", nil)
			default:
				if err := validateJSON(errorSchema, e.header, e.body); err != nil {
					fail(e, "error answer is not the Error body", err)
				}
			}
			continue
		case err != nil:
			fail(e, "routing", err)
			continue
		}
		validated++
		seen[e.req.Method+" "+route.Path+" "+fmt.Sprint(e.status)]++
		in := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: &openapi3filter.RequestValidationInput{Request: e.req, PathParams: params, Route: route},
			Status:                 e.status,
			Header:                 e.header,
			Body:                   io.NopCloser(bytes.NewReader(e.body)),
			Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
		}
		if err := openapi3filter.ValidateResponse(ctx, in); err != nil {
			fail(e, "does not match "+route.Operation.OperationID, err)
			continue
		}
		// ValidateResponse does not look at a body the document says there
		// is none of (204).
		if r := route.Operation.Responses.Status(e.status); r != nil && len(r.Value.Content) == 0 && len(e.body) > 0 {
			fail(e, "a body where "+route.Operation.OperationID+" documents none", nil)
		}
	}

	// Which operations and statuses the run exercised, for the reader of -v.
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var unused []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			hit := false
			for k := range seen {
				if strings.HasPrefix(k, method+" "+path+" ") {
					hit = true
					break
				}
			}
			if !hit {
				unused = append(unused, method+" "+path)
			}
		}
	}
	sort.Strings(unused)
	sum := fmt.Sprintf("openapi: %d answers validated against %s (%d with a method not documented on the path, checked as errors), %d skipped (undocumented paths, HEAD)\nopenapi: exercised %s",
		validated, openAPIFile, wrongVerb, skipped, strings.Join(keys, ", "))
	if len(unused) > 0 {
		sum += "\nopenapi: no end-to-end answer for " + strings.Join(unused, ", ")
	}
	if n := len(failures); n > 0 {
		const show = 20
		if n > show {
			failures = append(failures[:show], fmt.Sprintf("  … and %d more", n-show))
		}
		return sum, fmt.Errorf("%d answers:\n%s", n, strings.Join(failures, "\n"))
	}
	return sum, nil
}

// validateJSON checks that an answer is JSON and matches schema.
func validateJSON(schema *openapi3.Schema, h http.Header, body []byte) error {
	if ct := h.Get("Content-Type"); ct != "application/json" {
		return fmt.Errorf("Content-Type %q, want application/json", ct)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return err
	}
	return schema.VisitJSON(v, openapi3.MultiErrors())
}
