package config

import "github.com/spf13/pflag"

// Flag names of settings, for RegisterOnly.
const (
	FlagDatabaseURL      = "database-url"
	FlagNATSURL          = "nats-url"
	FlagStream           = "stream"
	FlagSubject          = "subject"
	FlagConsumer         = "consumer"
	FlagDLQStream        = "dlq-stream"
	FlagDLQPrefix        = "dlq-prefix"
	FlagDataDir          = "data-dir"
	FlagStatusToken      = "status-token"
	FlagStreamReplicas   = "stream-replicas"
	FlagStreamDuplicates = "stream-duplicates"
	FlagIndexVersion     = "index-version"
	FlagV2TagTemplate    = "v2-tag-template"
	FlagSpanSize         = "span-size"
	FlagMinLayerSize     = "min-layer-size"
	FlagLayerConc        = "layer-concurrency"
	FlagRangeFetch       = "range-fetch-conns"
	FlagPlainHTTP        = "plain-http"
	FlagRegistryCAFile   = "registry-ca-file"
	FlagRegistryAuth     = "registry-auth"
	FlagDockerConfig     = "docker-config"
)

// ServeOnly are the flags of settings only `indexer serve` uses: the
// HTTP side (with the webhook's handler), the workers' pacing and the
// scheduled backfill.
var ServeOnly = append([]string{
	"listen", "registry-listen", "webhook", "status-token",
	"workers", "job-timeout", "shutdown-grace", "retry-backoff", "retry-max",
	"backfill-interval", "backfill-target", FlagLayerConc, FlagRangeFetch,
}, HookFlags...)

// RegisterOnly declares on fs the flags of the named settings only, with
// the same names, environment variables, defaults and help as serve's; the
// other settings keep their defaults and read neither flag nor environment.
// The returned Loader's Load resolves the named settings (flag, then
// environment, then the YAML file of --config when withFile).
func RegisterOnly(fs *pflag.FlagSet, cfg *Config, lookupEnv func(string) (string, bool), withFile bool, flags ...string) *Loader {
	return register(fs, cfg, lookupEnv, withFile, func(flag string) bool { return contains(flags, flag) })
}

// RegisterExcept is RegisterOnly for every setting but the named ones.
func RegisterExcept(fs *pflag.FlagSet, cfg *Config, lookupEnv func(string) (string, bool), flags ...string) *Loader {
	return register(fs, cfg, lookupEnv, true, func(flag string) bool { return !contains(flags, flag) })
}

func register(fs *pflag.FlagSet, cfg *Config, lookupEnv func(string) (string, bool), withFile bool, keep func(string) bool) *Loader {
	if withFile {
		fs.StringVar(&cfg.File, "config", "", "YAML file with settings (env INDEXER_CONFIG)")
	}
	all := cfg.bindings(lookupEnv)
	spare := pflag.NewFlagSet("defaults", pflag.ContinueOnError)
	l := &Loader{cfg: cfg, fs: fs, lookupEnv: lookupEnv, all: all, noFile: !withFile}
	for _, b := range all {
		if keep(b.Flag) {
			withEnv := b.Setting
			withEnv.Usage += " (env " + b.Env + ")"
			b.register(fs, withEnv)
			l.bindings = append(l.bindings, b)
		} else {
			b.register(spare, b.Setting) // sets the default
		}
	}
	return l
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
