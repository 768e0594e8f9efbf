package metrics_test

// The Grafana dashboard (grafana/soci-indexer.json) and the Prometheus alert
// rules (prometheus/alerts.yml) name only metrics the binaries export, with
// labels those metrics have. What is exported is read from the code, not
// listed here: an all-in-one `indexer serve` (app.Start, as cmd/indexer
// runs it) indexes one image, then its registry is described (every metric it
// can export, with its labels, observed or not) and its /metrics scraped (the
// types: a histogram's _bucket/_sum/_count); the standalone webhook's registry
// is described too. The queries are parsed with Prometheus's own PromQL parser.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/soci-indexer/soci-indexer/internal/app"
	"github.com/soci-indexer/soci-indexer/internal/testsupport"
	"github.com/soci-indexer/soci-indexer/pkg/webhook"
)

// exportedMetric is one metric family a binary can export.
type exportedMetric struct {
	labels map[string]bool
	typ    string // from a scrape: counter, gauge, histogram, summary; "" when never observed
}

var descRx = regexp.MustCompile(`^Desc\{fqName: "([^"]+)".*variableLabels: \{([^}]*)\}\}$`)

// describe adds every metric reg can export, with its variable labels.
func describe(t *testing.T, reg prometheus.Collector, into map[string]*exportedMetric) {
	t.Helper()
	ch := make(chan *prometheus.Desc)
	go func() { reg.Describe(ch); close(ch) }()
	for d := range ch {
		m := descRx.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the metric name of %s", d)
		}
		e := into[m[1]]
		if e == nil {
			e = &exportedMetric{labels: map[string]bool{}}
			into[m[1]] = e
		}
		for _, l := range strings.Split(m[2], ",") {
			if l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"); l != "" {
				e.labels[l] = true
			}
		}
	}
}

var typeRx = regexp.MustCompile(`(?m)^# TYPE (\S+) (\S+)$`)

// exportedMetrics runs an all-in-one server, indexes one image, and returns
// what it and the standalone webhook export.
func exportedMetrics(t *testing.T) map[string]*exportedMetric {
	t.Helper()
	cfg := testsupport.DefaultConfig(t)
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.RegistryListen = "127.0.0.1:0"
	cfg.MinLayerSize = 0
	cfg.DockerConfig = filepath.Join(t.TempDir(), "none.json")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := app.Start(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	defer func() { stop(); <-done }()

	// One indexed image gives the job, stage and zTOC metrics their first
	// samples, so that the scrape shows their types.
	pushOneLayerImage(ctx, t, s.RegistryAddr(), "metrics/app", "v1")
	var scrape string
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(scrape, `soci_indexer_jobs_total{action="push",outcome="succeeded"}`) {
		if time.Now().After(deadline) {
			t.Fatalf("no succeeded job in /metrics within a minute:\n%s", scrape)
		}
		time.Sleep(100 * time.Millisecond)
		scrape = get(t, "http://"+s.Addr()+"/metrics")
	}

	exported := map[string]*exportedMetric{}
	describe(t, s.Metrics().Registry, exported)
	standalone := prometheus.NewRegistry()
	tok := webhook.SourceConfig{Token: "x"}
	if _, err := webhook.New(nil, webhook.Config{Distribution: tok, Harbor: tok, CloudEvents: tok, ECR: tok}, webhook.WithRegistry(standalone)); err != nil {
		t.Fatal(err)
	}
	describe(t, standalone, exported)
	for _, m := range typeRx.FindAllStringSubmatch(scrape, -1) {
		e, ok := exported[m[1]]
		if !ok {
			t.Fatalf("/metrics has %s, which the registry does not describe: the description parser is wrong", m[1])
		}
		e.typ = m[2]
	}
	return exported
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d, %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// pushOneLayerImage pushes an image of one 256 KiB random-file layer.
func pushOneLayerImage(ctx context.Context, t *testing.T, registry, repository, tag string) {
	t.Helper()
	repo, err := remote.NewRepository(registry + "/" + repository)
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	data := make([]byte, 256<<10)
	_, _ = rand.Read(data)
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	if err := tw.WriteHeader(&tar.Header{Name: "file", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write(data)
	_ = tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(raw.Bytes())
	_ = zw.Close()
	push := func(mediaType string, b []byte, ref string) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
		var err error
		if ref == "" {
			err = repo.Push(ctx, d, bytes.NewReader(b))
		} else {
			err = repo.PushReference(ctx, d, bytes.NewReader(b), ref)
		}
		if err != nil {
			t.Fatalf("push %s: %v", mediaType, err)
		}
		return d
	}
	layer := push(ocispec.MediaTypeImageLayerGzip, gz.Bytes(), "")
	cfg, _ := json.Marshal(ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(raw.Bytes())}}})
	m, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: push(ocispec.MediaTypeImageConfig, cfg, ""), Layers: []ocispec.Descriptor{layer}})
	push(ocispec.MediaTypeImageManifest, m, tag)
}

// query is one PromQL expression and where it comes from.
type query struct {
	where, expr string
}

// Grafana's built-in variables and the dashboard's own, replaced by values
// of the same kind so that the expressions parse.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h", "${job}", ".*", "$job", ".*")

func dashboardQueries(t *testing.T) []query {
	t.Helper()
	raw, err := os.ReadFile("../grafana/soci-indexer.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("deploy/grafana/soci-indexer.json: %v", err)
	}
	var out []query
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out = append(out, query{where: "dashboard panel " + p.Title, expr: grafanaVars.Replace(tg.Expr)})
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_]\w*)\)$`)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		s, _ := q["query"].(string)
		m := labelValues.FindStringSubmatch(s)
		if m == nil {
			t.Errorf("dashboard variable %s: query %q is not label_values(SELECTOR, LABEL)", v.Name, s)
			continue
		}
		// The label must be on what the selector selects: group by it.
		out = append(out, query{where: "dashboard variable " + v.Name, expr: fmt.Sprintf("count by (%s) (%s)", m[2], m[1])})
	}
	return out
}

func ruleQueries(t *testing.T) []query {
	t.Helper()
	raw, err := os.ReadFile("../prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("deploy/prometheus/alerts.yml: %v", err)
	}
	var out []query
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out = append(out, query{where: "alert " + r.Alert + r.Record, expr: r.Expr})
		}
	}
	return out
}

// Labels Prometheus adds to every scraped series.
var targetLabels = map[string]bool{"job": true, "instance": true}

// resolve maps a name a query uses onto the exported family and the labels
// the series of that name carry.
func resolve(exported map[string]*exportedMetric, name string) (labels map[string]bool, err error) {
	if e, ok := exported[name]; ok {
		if e.typ == "histogram" || e.typ == "summary" {
			return nil, fmt.Errorf("%s is a %s: query %s_bucket, _sum or _count", name, e.typ, name)
		}
		return e.labels, nil
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		e, ok := exported[base]
		if !ok {
			break
		}
		switch {
		case e.typ == "histogram" || (e.typ == "summary" && suffix != "_bucket"):
		case e.typ == "":
			return nil, fmt.Errorf("%s: %s was never observed, so its type is unknown", name, base)
		default:
			return nil, fmt.Errorf("%s: %s is a %s, it has no %s series", name, base, e.typ, suffix)
		}
		l := map[string]bool{}
		for k := range e.labels {
			l[k] = true
		}
		if suffix == "_bucket" {
			l["le"] = true
		}
		if e.typ == "summary" {
			l["quantile"] = true
		}
		return l, nil
	}
	return nil, fmt.Errorf("%s is not a metric the binaries export", name)
}

// checkQuery parses q and returns what is wrong with the metric names and
// label names it uses.
func checkQuery(exported map[string]*exportedMetric, q query) []string {
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(q.expr)
	if err != nil {
		return []string{fmt.Sprintf("does not parse: %v", err)}
	}
	var problems []string
	selectorLabels := func(node parser.Node) (map[string]bool, int) {
		union, n := map[string]bool{}, 0
		parser.Inspect(node, func(node parser.Node, _ []parser.Node) error {
			vs, ok := node.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			for _, name := range selectorNames(exported, vs) {
				if l, err := resolve(exported, name); err == nil {
					n++
					for k := range l {
						union[k] = true
					}
				}
			}
			return nil
		})
		return union, n
	}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			names := selectorNames(exported, n)
			if len(names) == 0 {
				problems = append(problems, fmt.Sprintf("selector %s matches no exported metric", n))
			}
			for _, name := range names {
				l, err := resolve(exported, name)
				if err != nil {
					problems = append(problems, err.Error())
					continue
				}
				for _, m := range n.LabelMatchers {
					if m.Name != "__name__" && !l[m.Name] && !targetLabels[m.Name] {
						problems = append(problems, fmt.Sprintf("%s has no label %q", name, m.Name))
					}
				}
			}
		case *parser.AggregateExpr:
			l, found := selectorLabels(n.Expr)
			for _, g := range n.Grouping {
				if found > 0 && !l[g] && !targetLabels[g] {
					problems = append(problems, fmt.Sprintf("%s by (%s): no metric under it has the label %q", n.Op, strings.Join(n.Grouping, ", "), g))
				}
			}
		}
		return nil
	})
	return problems
}

// selectorNames returns the series names a selector selects: its metric
// name, or for a {__name__=~"..."} selector the exported series names
// (a histogram's _bucket, _sum and _count) matching it.
func selectorNames(exported map[string]*exportedMetric, vs *parser.VectorSelector) []string {
	if vs.Name != "" {
		return []string{vs.Name}
	}
	var out []string
	for _, m := range vs.LabelMatchers {
		if m.Name != "__name__" {
			continue
		}
		for name, e := range exported {
			series := []string{name}
			switch e.typ {
			case "histogram":
				series = []string{name + "_bucket", name + "_sum", name + "_count"}
			case "summary":
				series = []string{name, name + "_sum", name + "_count"}
			}
			for _, s := range series {
				if m.Matches(s) {
					out = append(out, s)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	dash, rules := dashboardQueries(t), ruleQueries(t)
	if len(dash) < 10 || len(rules) < 5 {
		t.Fatalf("%d dashboard queries and %d rules: the files were not read", len(dash), len(rules))
	}
	used := map[string]bool{}
	for _, q := range append(dash, rules...) {
		for _, p := range checkQuery(exported, q) {
			t.Errorf("%s: %s\n\t%s", q.where, p, q.expr)
		}
		if expr, err := parser.NewParser(parser.Options{}).ParseExpr(q.expr); err == nil {
			parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
				if vs, ok := node.(*parser.VectorSelector); ok && vs.Name != "" {
					used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(vs.Name, "_bucket"), "_sum"), "_count")] = true
				}
				return nil
			})
		}
	}
	// The other direction, as a report: the project's own metrics nothing shows.
	var unused []string
	for name := range exported {
		if strings.HasPrefix(name, "soci_indexer_") && !used[name] {
			unused = append(unused, name)
		}
	}
	slices.Sort(unused)
	if len(unused) > 0 {
		t.Errorf("soci-indexer metrics neither the dashboard nor the alerts use: %v", unused)
	}
}

// The checker itself catches what it is for: unknown names, unknown labels,
// a histogram queried without its suffix, a suffix on a counter, and
// grouping by a label nothing has.
func TestMetricsCheckCatchesMistakes(t *testing.T) {
	exported := map[string]*exportedMetric{
		"soci_indexer_jobs_total":    {labels: map[string]bool{"action": true, "outcome": true}, typ: "counter"},
		"soci_indexer_stage_seconds": {labels: map[string]bool{"stage": true}, typ: "histogram"},
	}
	for _, tc := range []struct {
		expr string
		want string // "" means no problem
	}{
		{`sum by (outcome) (rate(soci_indexer_jobs_total{action="push", job=~".*"}[5m]))`, ""},
		{`histogram_quantile(0.9, sum by (le, stage) (rate(soci_indexer_stage_seconds_bucket[5m])))`, ""},
		{`count by (action) ({__name__=~"soci_indexer_jobs.*"})`, ""},
		{`rate(soci_indexer_job_total[5m])`, "not a metric the binaries export"},
		{`rate(soci_indexer_jobs_total{result="x"}[5m])`, `has no label "result"`},
		{`soci_indexer_stage_seconds`, "is a histogram"},
		{`soci_indexer_jobs_total_bucket`, "is a counter"},
		{`sum by (stage) (soci_indexer_jobs_total)`, `no metric under it has the label "stage"`},
		{`{__name__=~"nothing_.*"}`, "matches no exported metric"},
		{`sum(`, "does not parse"},
	} {
		problems := checkQuery(exported, query{expr: tc.expr})
		got := strings.Join(problems, "; ")
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: problems %q, want %q", tc.expr, got, tc.want)
		}
	}
}
