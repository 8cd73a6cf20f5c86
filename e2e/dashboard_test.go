package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// TestDashboardAndAlertsUseRealMetrics: every metric that a panel of the
// Grafana dashboard or an alert rule queries is one the real proxy serves,
// and every authsidecar_ metric it serves has a panel. The proxy runs on
// PostgreSQL (the database pool's metrics exist only there) and sees a
// login, a forwarded request and a failed login first, so that the
// metrics that appear with their first observation are there.
func TestDashboardAndAlertsUseRealMetrics(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser(device, "1111", "1111", false)
	lb := login(t, s.Proxy, device, "1111", "1111")
	if r := do(t, "POST", s.Proxy.URL()+"/api/storage", lb.Token, map[string]any{"key": "k", "data": 1}); r.Status != 201 {
		t.Fatalf("store: %d %s", r.Status, r.Body)
	}
	if r := do(t, "POST", s.Proxy.URL()+"/api/auth/login", "", map[string]string{"deviceId": device, "username": "1111", "password": "0000"}); r.Status != 401 {
		t.Fatalf("failed login: %d %s", r.Status, r.Body)
	}
	var served map[string]bool
	waitFor(t, 30*time.Second, "the first count of live sessions", func() bool {
		served = sampleNames(scrapeText(t, s.Proxy))
		return served["authsidecar_sessions_live"]
	})

	used := map[string][]string{} // metric name -> where
	for where, expr := range dashboardQueries(t) {
		names, err := metricNames(expr)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		for _, n := range names {
			used[n] = append(used[n], where)
		}
	}
	if len(used) < 10 {
		t.Fatalf("only %d metrics found in the dashboard: the reading is broken", len(used))
	}
	for where, expr := range alertQueries(t) {
		names, err := metricNames(expr)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		if len(names) == 0 {
			t.Errorf("%s: no metric in %q", where, expr)
		}
		for _, n := range names {
			if !served[n] {
				t.Errorf("%s queries %s, which the proxy does not serve", where, n)
			}
		}
	}
	for n, where := range used {
		if !served[n] {
			t.Errorf("%s query %s, which the proxy does not serve", strings.Join(where, ", "), n)
		}
	}
	// The other way: a metric the proxy serves that no panel shows is
	// one an operator never sees.
	shown := map[string]bool{}
	for n := range used {
		shown[family(n)] = true
	}
	var unshown []string
	for n := range served {
		if strings.HasPrefix(n, "authsidecar_") && !shown[family(n)] {
			unshown = append(unshown, n)
		}
	}
	sort.Strings(unshown)
	if len(unshown) > 0 {
		t.Errorf("no panel shows %s", strings.Join(unshown, ", "))
	}
}

// family is a sample's metric family: a histogram's _bucket, _sum and
// _count samples are one.
func family(sample string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if f, ok := strings.CutSuffix(sample, suffix); ok {
			return f
		}
	}
	return sample
}

// sampleNames are the names of the samples of a Prometheus text page
// (a histogram's appear with their _bucket, _sum, _count suffixes).
func sampleNames(page string) map[string]bool {
	names := map[string]bool{}
	for _, line := range strings.Split(page, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// dashboardQueries are the PromQL expressions of every panel of the
// dashboard, by panel title.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "deploy", "grafana", "authsidecar.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []dashboardPanel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	out := map[string]string{}
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				out[fmt.Sprintf("panel %q target %s", p.Title, tg.RefID)] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

type dashboardPanel struct {
	Title   string `json:"title"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"` // a collapsed row's
}

// alertQueries are the expressions of the alert rules, by alert.
func alertQueries(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "deploy", "prometheus", "authsidecar-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out["alert "+r.Alert] = r.Expr
		}
	}
	return out
}

// grafanaVariable is a dashboard variable ($__rate_interval, ${x}): in
// these queries one only ever stands for a range.
var grafanaVariable = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`)

// promQLWords are PromQL's keywords: identifiers that are not metrics.
var promQLWords = []string{"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
	"bool", "offset", "inf", "nan"}

// aggregations are PromQL's aggregation operators, which may be followed
// by their by or without clause before their parentheses.
var aggregations = []string{"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
	"bottomk", "topk", "quantile", "limitk", "limit_ratio"}

// metricNames returns the metric names a PromQL expression selects: every
// identifier that is not a function, an aggregation, a keyword, a label
// (inside {}, or the list after by, without, on, ignoring, group_left,
// group_right), a string, a number or a duration.
func metricNames(expr string) ([]string, error) {
	s := grafanaVariable.ReplaceAllString(expr, "5m")
	var names []string
	skipTo := func(i int, open, close byte) (int, error) {
		depth := 0
		for ; i < len(s); i++ {
			switch c := s[i]; {
			case c == '"' || c == '\'' || c == '`':
				end, err := skipString(s, i)
				if err != nil {
					return 0, err
				}
				i = end
			case c == open:
				depth++
			case c == close:
				depth--
				if depth == 0 {
					return i, nil
				}
			}
		}
		return 0, fmt.Errorf("unbalanced %c in %q", open, expr)
	}
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') }
	isIdent := func(c byte) bool { return isIdentStart(c) || ('0' <= c && c <= '9') }
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(s, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '{':
			end, err := skipTo(i, '{', '}')
			if err != nil {
				return nil, err
			}
			i = end
		case c == '[':
			end, err := skipTo(i, '[', ']')
			if err != nil {
				return nil, err
			}
			i = end
		case ('0' <= c && c <= '9') || (c == '.' && i+1 < len(s) && '0' <= s[i+1] && s[i+1] <= '9'):
			for i+1 < len(s) && (isIdent(s[i+1]) || s[i+1] == '.') {
				i++ // a number or a duration: 0.99, 1e3, 5m, 1h30m
			}
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			word := s[i:j]
			k := j
			for k < len(s) && (s[k] == ' ' || s[k] == '\t' || s[k] == '\n') {
				k++
			}
			call := k < len(s) && s[k] == '('
			if !call && slices.Contains(aggregations, strings.ToLower(word)) {
				// sum by (le) (…): the clause comes before the call.
				rest := strings.ToLower(s[k:])
				call = strings.HasPrefix(rest, "by") || strings.HasPrefix(rest, "without")
			}
			switch {
			case slices.Contains(promQLWords, strings.ToLower(word)):
				if call { // a label list: by (le), on (instance)
					end, err := skipTo(k, '(', ')')
					if err != nil {
						return nil, err
					}
					j = end + 1
				}
			case call: // a function or an aggregation
			default:
				names = append(names, word)
			}
			i = j - 1
		}
	}
	return names, nil
}

// skipString returns the index of the quote that closes the string
// starting at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j, nil
		}
	}
	return 0, fmt.Errorf("unterminated string in %q", s)
}

func TestMetricNamesOfPromQL(t *testing.T) {
	t.Parallel()
	for expr, want := range map[string][]string{
		`sum by (outcome) (rate(authsidecar_requests_total[$__rate_interval]))`:                         {"authsidecar_requests_total"},
		`histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket{code=~"5..|error"}[5m])))`:         {"a_seconds_bucket"},
		`sum(rate(x{result="hit"}[5m])) / sum(rate(x[5m])) > 0.5 and sum(rate(y[1h30m] offset 5m)) > 1`: {"x", "x", "y"},
		`avg_over_time(q[5m]) >= 1 or sum without (outcome, code) (rate(r{outcome="busy"}[5m])) > 0`:    {"q", "r"},
		`process_resident_memory_bytes and on (instance) up`:                                            {"process_resident_memory_bytes", "up"},
		`a * on(instance) group_left(pod) b{l='it\'s'} unless c`:                                        {"a", "b", "c"},
		`max(authsidecar_sessions_live)`:                                                                {"authsidecar_sessions_live"},
		`sum(rate(m[${interval}])) by (job)`:                                                            {"m"},
		`1 - sum(x) / count(y == bool 0)`:                                                               {"x", "y"},
		`rate(m:recorded:rate5m[10m:1m])`:                                                               {"m:recorded:rate5m"},
	} {
		got, err := metricNames(expr)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("metricNames(%q) = %v, %v; want %v", expr, got, err, want)
		}
	}
	for _, bad := range []string{`sum(x{a="b"`, `x{a="b}`, `rate(x[5m)`} {
		if _, err := metricNames(bad); err == nil {
			t.Errorf("metricNames(%q): no error", bad)
		}
	}
}
