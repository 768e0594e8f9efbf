package webhook

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/soci-indexer/soci-indexer/pkg/index"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// Why an event was dropped; the values label the dropped-events metric.
const (
	DropAction      = "action"       // neither a push nor a delete (pull, mount, scan, …)
	DropBlob        = "blob"         // about a blob, not a manifest
	DropNoDigest    = "no_digest"    // no manifest digest (a push by tag alone, a repository delete)
	DropNoRegistry  = "no_registry"  // registry host unknown and not configured
	DropRegistry    = "registry"     // registry host not in the allow-list
	DropOwnArtifact = "own_artifact" // a SOCI index manifest
	DropReferrers   = "referrers_tag"
	DropOwnTag      = "own_tag" // tag of an index we push (v2 tag template)
	DropRepository  = "repository"
	DropTag         = "tag"
	DropInvalid     = "invalid" // no repository, or otherwise not a job
)

// FilterConfig selects the events that become jobs. Patterns are globs:
// "*" matches any run of characters except "/", "**" any run including
// "/", "?" one character except "/"; everything else matches itself.
// Empty include lists include everything; excludes win over includes.
type FilterConfig struct {
	IncludeRepositories []string
	ExcludeRepositories []string
	// IncludeTags and ExcludeTags apply to events that carry a tag.
	// Events by digest alone (the children of a multi-platform image)
	// pass, so a tagged index is indexed whole.
	IncludeTags []string
	ExcludeTags []string
	// OwnTags match the tags the indexer itself pushes (SOCI index
	// manifest v2 images); default ["*-soci"].
	OwnTags []string
	// AllowedRegistries names the registry hosts (host[:port]) jobs may
	// name, as the workers' allow-list does; events for any other host are
	// refused. Empty: every host.
	AllowedRegistries []string
	// AllowRegistry, when set, decides instead of AllowedRegistries (an
	// all-in-one server knows its registry's address only once it runs).
	AllowRegistry func(host string) bool
}

// DefaultOwnTags returns the default for FilterConfig.OwnTags: the suffix
// of the default v2 tag template.
func DefaultOwnTags() []string { return []string{"*-soci"} }

// Filter decides which events become jobs.
type Filter struct {
	includeRepos, excludeRepos []*regexp.Regexp
	includeTags, excludeTags   []*regexp.Regexp
	ownTags                    []*regexp.Regexp
	allowed                    map[string]bool // lowercased; nil: all
	allow                      func(string) bool
}

// NewFilter compiles a FilterConfig.
func NewFilter(cfg FilterConfig) (*Filter, error) {
	own := cfg.OwnTags
	if own == nil {
		own = DefaultOwnTags()
	}
	f := &Filter{allow: cfg.AllowRegistry}
	for _, h := range cfg.AllowedRegistries {
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
			if f.allowed == nil {
				f.allowed = map[string]bool{}
			}
			f.allowed[h] = true
		}
	}
	for _, set := range []struct {
		dst  *[]*regexp.Regexp
		pats []string
	}{
		{&f.includeRepos, cfg.IncludeRepositories},
		{&f.excludeRepos, cfg.ExcludeRepositories},
		{&f.includeTags, cfg.IncludeTags},
		{&f.excludeTags, cfg.ExcludeTags},
		{&f.ownTags, own},
	} {
		for _, p := range set.pats {
			re, err := compileGlob(p)
			if err != nil {
				return nil, err
			}
			*set.dst = append(*set.dst, re)
		}
	}
	return f, nil
}

// compileGlob turns a glob into an anchored regular expression.
func compileGlob(pattern string) (*regexp.Regexp, error) {
	if pattern == "" {
		return nil, fmt.Errorf("webhook: empty glob pattern")
	}
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; c {
		case '*':
			if i+1 < len(pattern) && pattern[i+1] == '*' {
				b.WriteString(".*")
				i++
			} else {
				b.WriteString("[^/]*")
			}
		case '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

func matchAny(res []*regexp.Regexp, s string) bool {
	for _, re := range res {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}

// Drop returns why the event should not become a job, or "" to keep it.
func (f *Filter) Drop(e Event) string {
	j := e.Job
	switch {
	case j.Action != queue.ActionPush && j.Action != queue.ActionDelete:
		return DropAction
	case e.Blob:
		return DropBlob
	case j.Digest == "" && (j.Action != queue.ActionDelete || j.Tag == ""):
		// A tag delete names no digest; the worker finds the tag's jobs.
		return DropNoDigest
	case f.allow != nil && j.Registry != "" && !f.allow(j.Registry),
		f.allow == nil && f.allowed != nil && j.Registry != "" && !f.allowed[strings.ToLower(j.Registry)]:
		return DropRegistry
	case index.IsReferrersTag(j.Tag):
		return DropReferrers
	case isOwnArtifact(e):
		return DropOwnArtifact
	case j.Tag != "" && matchAny(f.ownTags, j.Tag):
		return DropOwnTag
	case len(f.includeRepos) > 0 && !matchAny(f.includeRepos, j.Repository),
		matchAny(f.excludeRepos, j.Repository):
		return DropRepository
	case j.Tag != "" && len(f.includeTags) > 0 && !matchAny(f.includeTags, j.Tag),
		j.Tag != "" && matchAny(f.excludeTags, j.Tag):
		return DropTag
	}
	return ""
}

// isOwnArtifact reports whether the event is about one of the indexer's
// own artifacts, by pkg/index's rule on what the event tells of the
// manifest (no registry is read here: an index the event cannot place is
// left to the worker).
func isOwnArtifact(e Event) bool {
	c, err := index.Classify(index.ManifestInfo{
		MediaType:       e.Job.MediaType,
		ArtifactType:    e.ArtifactType,
		ConfigMediaType: e.ConfigMediaType,
		Descriptors:     e.References,
		Tag:             e.Job.Tag,
	}, nil)
	return err == nil && c.Ours()
}
