package db

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestWriteReportTable(t *testing.T) {
	rows := []FailureRow{{
		Registry: "reg:5000", Repository: "team/app", Digest: "sha256:abc", Tag: "v1", Attempts: 3,
		LastError: "401\nunauthorized", Worker: "w1", FinishedAt: time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC),
	}}
	var buf bytes.Buffer
	if err := WriteReportTable(&buf, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("table has %d lines, want a header and one row:\n%s", len(lines), buf.String())
	}
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != "REGISTRY REPOSITORY DIGEST TAG ATTEMPTS LAST_ERROR WORKER FINISHED_AT" {
		t.Errorf("header = %q", lines[0])
	}
	if got := strings.Join(strings.Fields(lines[1]), " "); got != "reg:5000 team/app sha256:abc v1 3 401 unauthorized w1 2026-11-27T04:00:00Z" {
		t.Errorf("row = %q", got)
	}
	if err := WriteReportTable(&buf, 42); err == nil {
		t.Error("WriteReportTable(42): no error")
	}
}

func TestWriteReportJSON(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteReportJSON(&buf, []CoverageRow(nil)); err != nil || strings.TrimSpace(buf.String()) != "[]" {
		t.Errorf("no rows = %q, %v; want []", buf.String(), err)
	}
	buf.Reset()
	if err := WriteReportJSON(&buf, []ReuseRow{{Registry: "r", Repository: "a", ZtocsReused: 2, BytesNotRebuilt: 99}}); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0]["bytes_not_rebuilt"] != 99.0 || got[0]["ztocs_reused"] != 2.0 {
		t.Errorf("JSON = %s", buf.String())
	}
}

func TestRunReport(t *testing.T) {
	t.Parallel()
	s := openStore(t, newSQLiteDSN(t))
	for _, name := range ReportNames {
		if _, err := RunReport(context.Background(), s, name, 0); err != nil {
			t.Errorf("RunReport(%s): %v", name, err)
		}
	}
	if _, err := RunReport(context.Background(), s, "nope", 0); !errors.Is(err, ErrUnknownReport) {
		t.Errorf("RunReport(nope): %v, want ErrUnknownReport", err)
	}
}
