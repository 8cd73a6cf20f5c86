package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// promtool returns the path of promtool. The test command installs it
// (scripts/observability-tools.sh); without it the rules are unchecked,
// which is a failure, not a skip.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed: install the Debian package prometheus (scripts/observability-tools.sh does, as root)")
	}
	return p
}

// TestAlertRulesPassPromtool: the rules load in Prometheus, and each
// alert fires on the series it is for and not before (the unit tests in
// authsidecar-rules.test.yaml).
func TestAlertRulesPassPromtool(t *testing.T) {
	t.Parallel()
	bin := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", "authsidecar-rules.yaml"},
		{"test", "rules", "authsidecar-rules.test.yaml"},
	} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = "prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

type ruleGroups struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

// TestPrometheusRuleHasTheSameRules: the operator's PrometheusRule and the
// plain rule file are one set of rules in two wrappings.
func TestPrometheusRuleHasTheSameRules(t *testing.T) {
	t.Parallel()
	var plain ruleGroups
	readYAML(t, "prometheus/authsidecar-rules.yaml", &plain)
	var pr struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
		Spec ruleGroups `json:"spec"`
	}
	readYAML(t, "prometheus/prometheusrule.yaml", &pr)
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" || pr.Metadata.Name == "" {
		t.Fatalf("not a PrometheusRule: %s %s %s", pr.APIVersion, pr.Kind, pr.Metadata.Name)
	}
	if len(plain.Groups) == 0 || !reflect.DeepEqual(plain, pr.Spec) {
		t.Fatalf("the PrometheusRule's rules differ from authsidecar-rules.yaml:\n%+v\n%+v", pr.Spec, plain)
	}
}

// TestEveryAlertHasARunbook: each alert names its section of
// docs/operations.md, and that section exists.
func TestEveryAlertHasARunbook(t *testing.T) {
	t.Parallel()
	var plain ruleGroups
	readYAML(t, "prometheus/authsidecar-rules.yaml", &plain)
	ops, err := os.ReadFile(filepath.Join("..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	headings := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#+ (.+)$`).FindAllStringSubmatch(string(ops), -1) {
		headings[anchor(m[1])] = true
	}
	n := 0
	for _, g := range plain.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			want := "docs/operations.md#" + strings.ToLower(r.Alert)
			if r.Annotations["runbook"] != want {
				t.Errorf("%s: runbook %q, want %q", r.Alert, r.Annotations["runbook"], want)
			}
			if !headings[strings.ToLower(r.Alert)] {
				t.Errorf("%s: docs/operations.md has no section %q", r.Alert, r.Alert)
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: want a severity, a summary and a description", r.Alert)
			}
		}
	}
	if n < 7 {
		t.Fatalf("%d alerts, want the 7 the runbook covers", n)
	}
}

// anchor is the fragment a Markdown renderer (GitHub's) gives a heading.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

type grafanaPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"`
}

// TestDashboardQueriesArePromQL: the Grafana dashboard is JSON that Grafana
// imports (panels with ids of their own, each query on the dashboard's
// Prometheus variable), and each query is PromQL that Prometheus accepts:
// promtool checks them as recording rules. (That they query metrics the
// proxy serves, e2e checks against the real proxy.)
func TestDashboardQueriesArePromQL(t *testing.T) {
	t.Parallel()
	bin := promtool(t)
	b, err := os.ReadFile(filepath.Join("grafana", "authsidecar.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID        string         `json:"uid"`
		Title      string         `json:"title"`
		Panels     []grafanaPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name, Type, Query string
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	if d.UID == "" || d.Title == "" || len(d.Templating.List) == 0 || d.Templating.List[0].Name != "datasource" ||
		d.Templating.List[0].Type != "datasource" || d.Templating.List[0].Query != "prometheus" {
		t.Fatalf("dashboard %q (uid %q): want a title, a uid and a Prometheus datasource variable", d.Title, d.UID)
	}
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	ids := map[int]bool{}
	n := 0
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
			}
			ids[p.ID] = true
			if p.Title == "" {
				t.Errorf("panel %d has no title", p.ID)
			}
			if p.Type != "row" && (p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0) {
				t.Errorf("panel %q: want queries on ${datasource}", p.Title)
			}
			for _, tg := range p.Targets {
				n++
				// Grafana's variables stand for a range here.
				expr := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m").Replace(tg.Expr)
				fmt.Fprintf(&rules, "      - record: dashboard:query%d\n        expr: %s\n", n, strconv.Quote(expr))
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	if n < 20 {
		t.Fatalf("%d queries in the dashboard; the reading is broken", n)
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "check", "rules", file).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the dashboard's queries: %v\n%s", err, out)
	}
}
