package webhook

import (
	"net/http"
	"testing"
)

// The parsers read untrusted bodies: they must not panic, and the events
// they return are bounded by maxEventsPerRequest.

func FuzzParseDistribution(f *testing.F) {
	f.Add(readTestdata(f, "distribution-push.json"))
	f.Add([]byte(`{"events":[{"action":"delete","target":{"repository":"r","tag":"v1"}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		events, err := ParseDistribution(body)
		checkParsed(t, events, err)
	})
}

func FuzzParseHarbor(f *testing.F) {
	f.Add(readTestdata(f, "harbor-default.json"))
	f.Add(readTestdata(f, "harbor-cloudevents.json"))
	f.Fuzz(func(t *testing.T, body []byte) {
		events, err := ParseHarbor(body)
		checkParsed(t, events, err)
	})
}

func FuzzParseCloudEvent(f *testing.F) {
	f.Add(readTestdata(f, "zot-structured.json"), false, false)
	f.Add(readTestdata(f, "zot-binary-data.json"), true, false)
	f.Add(readTestdata(f, "ecr-eventbridge.json"), true, false)
	f.Add([]byte(`[`+string(readTestdata(f, "harbor-cloudevents.json"))+`]`), false, true)
	f.Fuzz(func(t *testing.T, body []byte, binary, batch bool) {
		h := http.Header{"Content-Type": {MediaTypeCloudEvents}}
		switch {
		case binary:
			h = http.Header{"Content-Type": {"application/json"}, "Ce-Specversion": {"1.0"},
				"Ce-Type": {"zotregistry.image.updated"}, "Ce-Id": {"1"}}
		case batch:
			h.Set("Content-Type", MediaTypeCloudEventsBatch)
		}
		events, err := ParseCloudEvent(h, body)
		checkParsed(t, events, err)
		events, err = ParseEventBridge(body)
		checkParsed(t, events, err)
	})
}

func checkParsed(t *testing.T, events []Event, err error) {
	t.Helper()
	if err != nil && events != nil {
		t.Fatalf("events %v with error %v", events, err)
	}
	if len(events) > maxEventsPerRequest {
		t.Fatalf("%d events, more than %d", len(events), maxEventsPerRequest)
	}
	// Whatever parses must be safe to filter.
	f, ferr := NewFilter(FilterConfig{})
	if ferr != nil {
		t.Fatal(ferr)
	}
	for _, e := range events {
		_ = f.Drop(e)
		_ = e.Job.Key()
	}
}
