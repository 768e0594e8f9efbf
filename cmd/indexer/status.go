package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/soci-indexer/soci-indexer/internal/config"
	"github.com/soci-indexer/soci-indexer/internal/datadir"
	"github.com/soci-indexer/soci-indexer/pkg/status"
)

// exitError carries the process's exit code to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// errNotLazyLoadable is `indexer status`'s answer "no": exit 1, no message.
var errNotLazyLoadable = errors.New("not lazy-loadable")

func newStatusCmd() *cobra.Command {
	var (
		settings         config.Config
		loader           *config.Loader
		server, oldToken string
		asJSON           bool
	)
	cmd := &cobra.Command{
		Use:   "status REF",
		Short: "Print whether an image is indexed and lazy-loadable",
		Long: `Asks a running server's status API (docs/status.md) about one image:
registry/repository:tag or registry/repository@digest.
Exit status: 0 lazy-loadable, 1 not, 2 usage or connection error.`,
		Example: `  indexer status --data-dir .data 127.0.0.1:5000/demo/app:v1
  indexer status --server http://indexer:8080 --status-token "$TOKEN" reg/app@sha256:… --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := status.ParseRef(args[0]); err != nil {
				return &exitError{2, err}
			}
			if err := loader.Resolve(); err != nil {
				return &exitError{2, err}
			}
			token := settings.StatusToken
			if oldToken != "" {
				token = oldToken
			}
			// Without --server, the all-in-one server of the data directory
			// (serve's setting, ./.data by default) is asked, with its token.
			if server == "" || token == "" {
				d := datadir.Dir(settings.DataDir)
				if server == "" {
					rec, err := d.Running()
					if err != nil {
						return &exitError{2, err}
					}
					server = rec.HTTP
				}
				if token == "" {
					raw, err := os.ReadFile(d.StatusTokenFile())
					if err != nil {
						return &exitError{2, fmt.Errorf("status token: %w", err)}
					}
					token = strings.TrimSpace(string(raw))
				}
			}
			if server == "" || token == "" {
				return &exitError{2, errors.New("give --data-dir, or --server and --status-token")}
			}
			img, raw, err := fetchImageStatus(cmd, server, token, args[0])
			if err != nil {
				return &exitError{2, err}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				_, _ = out.Write(raw)
			} else {
				printImageStatus(out, args[0], img)
			}
			if !img.LazyLoadable {
				return &exitError{1, errNotLazyLoadable}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	// --data-dir and --status-token are serve's settings, with its names.
	loader = config.RegisterOnly(fl, &settings, os.LookupEnv, false, config.FlagDataDir, config.FlagStatusToken)
	fl.StringVar(&server, "server", os.Getenv("INDEXER_SERVER"), "base URL of the server, e.g. http://indexer:8080; without it, the server of --data-dir (env INDEXER_SERVER)")
	fl.StringVar(&oldToken, "token", "", "the status read token")
	_ = fl.MarkDeprecated("token", "use --status-token")
	fl.BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

func fetchImageStatus(cmd *cobra.Command, server, token, ref string) (*status.Image, []byte, error) {
	u := strings.TrimRight(server, "/") + "/status/api/v1/images?ref=" + url.QueryEscape(ref)
	req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("status: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("status: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("status: %s: %s", resp.Status, strings.TrimSpace(string(raw)))
	}
	var img status.Image
	if err := json.Unmarshal(raw, &img); err != nil {
		return nil, nil, fmt.Errorf("status: %w", err)
	}
	return &img, raw, nil
}

func printImageStatus(w io.Writer, ref string, img *status.Image) {
	yes := map[bool]string{true: "yes", false: "no"}
	fmt.Fprintf(w, "%s\n", ref)
	if !img.Known {
		fmt.Fprintf(w, "  unknown: no job named this image\n  lazy-loadable: no\n")
		return
	}
	fmt.Fprintf(w, "  digest:        %s\n  indexed:       %s\n  lazy-loadable: %s\n  ztocs:         %d built, %d reused\n",
		img.Digest, yes[img.Indexed], yes[img.LazyLoadable], img.ZtocsBuilt, img.ZtocsReused)
	if len(img.Platforms) > 0 {
		fmt.Fprintf(w, "  platforms:     %s\n", strings.Join(img.Platforms, ", "))
	}
	for _, ix := range img.Indexes {
		fmt.Fprintf(w, "  soci index %s %s: %s\n", ix.Version, ix.Platform, ix.Digest)
	}
	for _, t := range img.Tags {
		tag := t.Tag
		if tag == "" {
			tag = "(no tag)"
		}
		fmt.Fprintf(w, "  tag %s: %s, %d attempt(s)", tag, t.State, t.Attempts)
		if t.IndexDigest != "" {
			fmt.Fprintf(w, ", SOCI-enabled image index %s", t.IndexDigest)
		}
		if t.SkipReason != "" {
			fmt.Fprintf(w, ", skipped: %s", t.SkipReason)
		}
		if t.LastError != "" {
			fmt.Fprintf(w, ", last error: %s", t.LastError)
		}
		fmt.Fprintln(w)
	}
}
