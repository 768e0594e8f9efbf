package db

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"
)

// Reporter reads the report views (docs/db.md describes them).
type Reporter interface {
	// Coverage counts images per repository by outcome.
	Coverage(ctx context.Context) ([]CoverageRow, error)
	// Failures lists permanently failed jobs, latest first.
	Failures(ctx context.Context, limit int) ([]FailureRow, error)
	// Skipped lists the jobs looked at and not indexed, with the reason,
	// latest first.
	Skipped(ctx context.Context, limit int) ([]SkippedRow, error)
	// Reuse counts zTOCs built and reused per repository, in layers and
	// in layer bytes.
	Reuse(ctx context.Context) ([]ReuseRow, error)
	// Largest lists the largest layers that got a zTOC, with the zTOC.
	Largest(ctx context.Context, limit int) ([]LargestRow, error)
	// Throughput counts finished attempts per UTC day over the last days.
	Throughput(ctx context.Context, days int) ([]ThroughputRow, error)
}

// CoverageRow is one repository in the report_coverage view.
type CoverageRow struct {
	Registry   string `json:"registry"`
	Repository string `json:"repository"`
	Images     int64  `json:"images"`
	Indexed    int64  `json:"indexed"`
	Skipped    int64  `json:"skipped"`
	Failed     int64  `json:"failed"`
	Pending    int64  `json:"pending"`
}

// FailureRow is one failed job in the report_failures view.
type FailureRow struct {
	Registry   string    `json:"registry"`
	Repository string    `json:"repository"`
	Digest     string    `json:"digest"`
	Tag        string    `json:"tag"`
	Attempts   int64     `json:"attempts"`
	LastError  string    `json:"last_error"`
	Worker     string    `json:"worker"`
	FinishedAt time.Time `json:"finished_at"`
}

// SkippedRow is one skipped job in the report_skipped view.
type SkippedRow struct {
	Registry   string    `json:"registry"`
	Repository string    `json:"repository"`
	Digest     string    `json:"digest"`
	Tag        string    `json:"tag"`
	Reason     string    `json:"reason"`
	FinishedAt time.Time `json:"finished_at"`
}

// ReuseRow is one repository in the report_reuse view.
type ReuseRow struct {
	Registry        string `json:"registry"`
	Repository      string `json:"repository"`
	ZtocsBuilt      int64  `json:"ztocs_built"`
	ZtocsReused     int64  `json:"ztocs_reused"`
	BytesBuilt      int64  `json:"bytes_built"`
	BytesNotRebuilt int64  `json:"bytes_not_rebuilt"`
}

// LargestRow is one layer and its zTOC in the report_largest view.
type LargestRow struct {
	LayerDigest string `json:"layer_digest"`
	LayerSize   int64  `json:"layer_size"`
	ZtocDigest  string `json:"ztoc_digest"`
	ZtocSize    int64  `json:"ztoc_size"`
	SpanSize    int64  `json:"span_size"`
	Uses        int64  `json:"uses"`
}

// ThroughputRow is one UTC day in the report_throughput view.
type ThroughputRow struct {
	Day        string  `json:"day"` // YYYY-MM-DD
	Finished   int64   `json:"finished"`
	Succeeded  int64   `json:"succeeded"`
	Skipped    int64   `json:"skipped"`
	Failed     int64   `json:"failed"`
	BytesRead  int64   `json:"bytes_read"`
	AvgSeconds float64 `json:"avg_seconds"`
}

// The report queries both backends share: the views have the same names and
// columns in both dialects.
const (
	coverageQuery = `SELECT registry, repository, images, indexed, skipped, failed, pending
		FROM report_coverage ORDER BY registry, repository`
	// Latest first; NULL finished_at (not expected for a failed job) last.
	failuresQuery = `SELECT registry, repository, digest, tag, attempts, last_error, worker, finished_at
		FROM report_failures ORDER BY finished_at IS NULL, finished_at DESC, registry, repository, digest`
	skippedQuery = `SELECT registry, repository, digest, tag, skip_reason, finished_at
		FROM report_skipped ORDER BY finished_at IS NULL, finished_at DESC, registry, repository, digest, tag`
	reuseQuery = `SELECT registry, repository, ztocs_built, ztocs_reused, bytes_built, bytes_not_rebuilt
		FROM report_reuse ORDER BY bytes_not_rebuilt DESC, registry, repository`
	largestQuery = `SELECT layer_digest, layer_size, ztoc_digest, ztoc_size, span_size, uses
		FROM report_largest ORDER BY layer_size DESC, ztoc_size DESC, layer_digest, ztoc_digest`
)

func scanCoverage(row rowScanner, r *CoverageRow) error {
	return row.Scan(&r.Registry, &r.Repository, &r.Images, &r.Indexed, &r.Skipped, &r.Failed, &r.Pending)
}

func scanFailure(row rowScanner, r *FailureRow) error {
	var finished dbTime
	err := row.Scan(&r.Registry, &r.Repository, &r.Digest, &r.Tag, &r.Attempts, &r.LastError, &r.Worker, &finished)
	r.FinishedAt = finished.Time
	return err
}

func scanSkipped(row rowScanner, r *SkippedRow) error {
	var finished dbTime
	err := row.Scan(&r.Registry, &r.Repository, &r.Digest, &r.Tag, &r.Reason, &finished)
	r.FinishedAt = finished.Time
	return err
}

func scanReuse(row rowScanner, r *ReuseRow) error {
	return row.Scan(&r.Registry, &r.Repository, &r.ZtocsBuilt, &r.ZtocsReused, &r.BytesBuilt, &r.BytesNotRebuilt)
}

func scanLargest(row rowScanner, r *LargestRow) error {
	return row.Scan(&r.LayerDigest, &r.LayerSize, &r.ZtocDigest, &r.ZtocSize, &r.SpanSize, &r.Uses)
}

func scanThroughput(row rowScanner, r *ThroughputRow) error {
	return row.Scan(&r.Day, &r.Finished, &r.Succeeded, &r.Skipped, &r.Failed, &r.BytesRead, &r.AvgSeconds)
}

// ReportNames are the reports RunReport knows, in the CLI's order.
var ReportNames = []string{"coverage", "failures", "skipped", "reuse", "largest", "throughput"}

// ErrUnknownReport is returned by RunReport for a name not in ReportNames.
var ErrUnknownReport = errors.New("unknown report")

// RunReport runs the report called name and returns its rows (a slice of
// one of the *Row types). limit caps failures, skipped and largest, and is the number
// of days for throughput; 0 picks a default.
func RunReport(ctx context.Context, r Reporter, name string, limit int) (any, error) {
	orDefault := func(def int) int {
		if limit > 0 {
			return limit
		}
		return def
	}
	switch name {
	case "coverage":
		return r.Coverage(ctx)
	case "failures":
		return r.Failures(ctx, orDefault(50))
	case "skipped":
		return r.Skipped(ctx, orDefault(50))
	case "reuse":
		return r.Reuse(ctx)
	case "largest":
		return r.Largest(ctx, orDefault(20))
	case "throughput":
		return r.Throughput(ctx, orDefault(30))
	default:
		return nil, fmt.Errorf("%w %q: want one of %s", ErrUnknownReport, name, strings.Join(ReportNames, ", "))
	}
}

// WriteReportJSON writes rows as a JSON array.
func WriteReportJSON(w io.Writer, rows any) error {
	v := reflect.ValueOf(rows)
	if v.Kind() == reflect.Slice && v.IsNil() {
		rows = []struct{}{} // "[]", not "null"
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rows)
}

// WriteReportTable writes rows, a slice of structs, as an aligned table
// headed by the fields' JSON names.
func WriteReportTable(w io.Writer, rows any) error {
	v := reflect.ValueOf(rows)
	if v.Kind() != reflect.Slice || v.Type().Elem().Kind() != reflect.Struct {
		return fmt.Errorf("db: report rows are %T, want a slice of structs", rows)
	}
	t := v.Type().Elem()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := make([]string, t.NumField())
	for i := range header {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		header[i] = strings.ToUpper(name)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	cells := make([]string, t.NumField())
	for r := range v.Len() {
		row := v.Index(r)
		for i := range cells {
			cells[i] = formatCell(row.Field(i).Interface())
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

func formatCell(v any) string {
	switch v := v.(type) {
	case time.Time:
		if v.IsZero() {
			return "-"
		}
		return v.UTC().Format(time.RFC3339)
	case float64:
		return fmt.Sprintf("%.2f", v)
	case string:
		// One line per row: an error message may span several.
		return strings.NewReplacer("\n", " ", "\t", " ").Replace(v)
	default:
		return fmt.Sprint(v)
	}
}
