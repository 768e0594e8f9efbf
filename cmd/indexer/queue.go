package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/soci-indexer/soci-indexer/internal/config"
	"github.com/soci-indexer/soci-indexer/internal/datadir"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// queueFlags locate the job streams: serve's --nats-url, --stream,
// --subject, --consumer, --dlq-stream and --dlq-prefix (internal/config,
// env INDEXER_*). Without --nats-url the all-in-one server running on
// --data-dir is asked, as backfill does; never a default address, which
// could be an unrelated NATS server.
type queueFlags struct {
	settings config.Config
	loader   *config.Loader
	natsURL  string
	cfg      queue.Config
}

func (f *queueFlags) register(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	f.loader = config.RegisterOnly(pf, &f.settings, os.LookupEnv, false,
		config.FlagNATSURL, config.FlagStream, config.FlagSubject, config.FlagConsumer,
		config.FlagDLQStream, config.FlagDLQPrefix, config.FlagDataDir)
}

// resolve fills natsURL and cfg from the parsed flags and the environment.
func (f *queueFlags) resolve() error {
	if err := f.loader.Resolve(); err != nil {
		return err
	}
	f.natsURL = f.settings.NATSURL
	if f.natsURL == "" {
		running, err := datadir.Dir(f.settings.DataDir).Running()
		if err != nil {
			return fmt.Errorf("no --nats-url, and %w", err)
		}
		f.natsURL = running.NATSURL
	}
	qc := f.settings.QueueConfig()
	f.cfg = queue.Config{Stream: qc.Stream, SubjectPrefix: qc.SubjectPrefix, Consumer: qc.Consumer,
		DLQStream: qc.DLQStream, DLQPrefix: qc.DLQPrefix}
	def := func(p *string, d string) {
		if *p == "" {
			*p = d
		}
	}
	def(&f.cfg.Stream, queue.DefaultStream)
	def(&f.cfg.DLQStream, queue.DefaultDLQStream)
	def(&f.cfg.Consumer, queue.DefaultConsumer)
	def(&f.cfg.SubjectPrefix, queue.DefaultSubjectPrefix)
	def(&f.cfg.DLQPrefix, queue.DefaultDLQPrefix)
	return nil
}

// connect opens a NATS connection for one command.
func (f *queueFlags) connect() (*nats.Conn, jetstream.JetStream, error) {
	if err := f.resolve(); err != nil {
		return nil, nil, err
	}
	nc, err := queue.Connect(f.natsURL, "soci-indexer-cli", nil, nats.MaxReconnects(2))
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// open binds to the existing streams; it never creates or changes them.
func (f *queueFlags) open(ctx context.Context) (*queue.Queue, func(), error) {
	nc, js, err := f.connect()
	if err != nil {
		return nil, nil, err
	}
	q, err := queue.Bind(ctx, js, f.cfg)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return q, nc.Close, nil
}

func newQueueCmd() *cobra.Command {
	var f queueFlags
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "Inspect the job queue and its dead letters; set up its streams and consumer",
	}
	f.register(cmd)
	cmd.AddCommand(newQueueLsCmd(&f), newDLQCmd(&f), newQueueSetupCmd(&f))
	return cmd
}

// queueListing is `queue ls --json`.
type queueListing struct {
	Stream      string    `json:"stream"`
	Messages    uint64    `json:"messages"`
	Bytes       uint64    `json:"bytes"`
	FirstSeq    uint64    `json:"first_seq"`
	LastSeq     uint64    `json:"last_seq"`
	Oldest      time.Time `json:"oldest,omitzero"`
	Consumer    string    `json:"consumer"`
	Pending     uint64    `json:"pending"`
	AckPending  int       `json:"ack_pending"`
	Redelivered int       `json:"redelivered"`
	Waiting     int       `json:"waiting"`
	DLQStream   string    `json:"dlq_stream"`
	DeadLetters uint64    `json:"dead_letters"`
	Settings    struct {
		Replicas      int      `json:"replicas"`
		Storage       string   `json:"storage"`
		Duplicates    string   `json:"duplicates"`
		AckWait       string   `json:"ack_wait"`
		MaxDeliver    int      `json:"max_deliver"`
		BackOff       []string `json:"backoff"`
		MaxAckPending int      `json:"max_ack_pending"`
	} `json:"settings"`
}

// deadLetterListing is one entry of `queue dlq ls --json`.
type deadLetterListing struct {
	Sequence     uint64    `json:"seq"`
	DeadAt       time.Time `json:"dead_at"`
	Reason       string    `json:"reason"`
	Deliveries   uint64    `json:"deliveries"`
	WorkSequence uint64    `json:"work_seq"`
	Key          string    `json:"key"`
	Job          queue.Job `json:"job"`
	LastError    string    `json:"last_error"`
}

func newQueueLsCmd(f *queueFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "Show the work stream and consumer state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, closeConn, err := f.open(cmd.Context())
			if err != nil {
				return err
			}
			defer closeConn()
			st, err := q.Stats(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				c := q.Config()
				l := queueListing{Stream: st.Stream, Messages: st.Messages, Bytes: st.Bytes, FirstSeq: st.FirstSeq,
					LastSeq: st.LastSeq, Oldest: st.Oldest, Consumer: st.Consumer, Pending: st.Pending,
					AckPending: st.AckPending, Redelivered: st.Redelivered, Waiting: st.Waiting,
					DLQStream: st.DLQStream, DeadLetters: st.DeadLetters}
				l.Settings.Replicas, l.Settings.Storage = c.Replicas, "file"
				if c.MemoryStorage {
					l.Settings.Storage = "memory"
				}
				l.Settings.Duplicates, l.Settings.AckWait = c.Duplicates.String(), c.AckWait.String()
				l.Settings.MaxDeliver, l.Settings.MaxAckPending = c.MaxDeliver, c.MaxAckPending
				l.Settings.BackOff = []string{}
				for _, b := range c.BackOff {
					l.Settings.BackOff = append(l.Settings.BackOff, b.String())
				}
				return writeJSON(cmd.OutOrStdout(), l)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "STREAM\tMESSAGES\tBYTES\tFIRST SEQ\tLAST SEQ\n")
			fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\n\n", st.Stream, st.Messages, st.Bytes, st.FirstSeq, st.LastSeq)
			fmt.Fprintf(w, "CONSUMER\tPENDING\tACK PENDING\tREDELIVERED\tWAITING\n")
			fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\n\n", st.Consumer, st.Pending, st.AckPending, st.Redelivered, st.Waiting)
			fmt.Fprintf(w, "DEAD LETTERS\tMESSAGES\n")
			fmt.Fprintf(w, "%s\t%d\n\n", st.DLQStream, st.DeadLetters)
			printSettings(w, q.Config())
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object instead of tables")
	return cmd
}

// printSettings shows the settings in use on the server.
func printSettings(w io.Writer, c queue.Config) {
	storage := "file"
	if c.MemoryStorage {
		storage = "memory"
	}
	fmt.Fprintf(w, "REPLICAS\tSTORAGE\tDUPLICATES\tACK WAIT\tMAX DELIVER\tBACKOFF\tMAX ACK PENDING\n")
	fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d\t%v\t%d\n", c.Replicas, storage, c.Duplicates, c.AckWait, c.MaxDeliver, c.BackOff, c.MaxAckPending)
}

// newQueueSetupCmd is the deliberate way to create the streams and the
// consumer or change their settings: no other process changes a stream or
// consumer that exists.
func newQueueSetupCmd(f *queueFlags) *cobra.Command {
	var want queue.Config
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Create the streams and the workers' consumer, or change their settings",
		Long: `Creates the work stream, the dead-letter stream and the durable consumer, or
updates them. Only the settings given as flags change; the others keep their
values on the server (or the defaults, for what does not exist yet). Webhook
and workers never change a stream or consumer that exists: this command is
the one way to, e.g., go from 1 to 3 replicas. See docs/nats.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nc, js, err := f.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			cfg, err := queue.Current(cmd.Context(), js, f.cfg)
			if err != nil {
				return err
			}
			fl := cmd.Flags()
			if fl.Changed(config.FlagStreamReplicas) || fl.Changed("replicas") {
				cfg.Replicas = want.Replicas
			}
			if fl.Changed("memory") {
				cfg.MemoryStorage = want.MemoryStorage
			}
			if fl.Changed(config.FlagStreamDuplicates) || fl.Changed("duplicates") {
				cfg.Duplicates = want.Duplicates
			}
			if fl.Changed("ack-wait") {
				cfg.AckWait = want.AckWait
			}
			if fl.Changed("max-deliver") {
				cfg.MaxDeliver = want.MaxDeliver
			}
			if fl.Changed("backoff") {
				cfg.BackOff = want.BackOff
			}
			if fl.Changed("max-ack-pending") {
				cfg.MaxAckPending = want.MaxAckPending
			}
			q, err := queue.Setup(cmd.Context(), js, cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "set up %s, %s and consumer %s\n", f.cfg.Stream, f.cfg.DLQStream, f.cfg.Consumer)
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			printSettings(w, q.Config())
			return w.Flush()
		},
	}
	fl := cmd.Flags()
	// The streams' settings carry serve's names; the older short names
	// still work, with a deprecation notice.
	fl.IntVar(&want.Replicas, config.FlagStreamReplicas, 1, "replicas of both streams (1, 3 or 5 on a cluster)")
	fl.IntVar(&want.Replicas, "replicas", 1, "")
	_ = fl.MarkDeprecated("replicas", "use --"+config.FlagStreamReplicas)
	fl.BoolVar(&want.MemoryStorage, "memory", false, "keep the streams in memory (JetStream cannot change this on an existing stream)")
	fl.DurationVar(&want.Duplicates, config.FlagStreamDuplicates, queue.DefaultDuplicates, "deduplication window of published jobs")
	fl.DurationVar(&want.Duplicates, "duplicates", queue.DefaultDuplicates, "")
	_ = fl.MarkDeprecated("duplicates", "use --"+config.FlagStreamDuplicates)
	fl.DurationVar(&want.AckWait, "ack-wait", time.Minute, "time without progress after which JetStream redelivers a job")
	fl.IntVar(&want.MaxDeliver, "max-deliver", queue.DefaultMaxDeliver, "deliveries of one job before it is dead-lettered")
	fl.DurationSliceVar(&want.BackOff, "backoff", nil, "redelivery delays after ack timeouts (replaces ack-wait for redeliveries)")
	fl.IntVar(&want.MaxAckPending, "max-ack-pending", queue.DefaultMaxAckPending, "jobs out at once across all workers")
	return cmd
}

func newDLQCmd(f *queueFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "dlq", Short: "List and retry dead-lettered jobs"}
	var (
		limit  int
		asJSON bool
	)
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List dead letters with their last error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, closeConn, err := f.open(cmd.Context())
			if err != nil {
				return err
			}
			defer closeConn()
			dls, err := q.DeadLetters(cmd.Context(), limit)
			if err != nil {
				return err
			}
			if asJSON {
				list := make([]deadLetterListing, 0, len(dls))
				for _, dl := range dls {
					list = append(list, deadLetterListing{Sequence: dl.Sequence, DeadAt: dl.DeadAt, Reason: dl.Reason,
						Deliveries: dl.Deliveries, WorkSequence: dl.WorkSequence, Key: dl.Job.Key(), Job: dl.Job,
						LastError: dl.LastError})
				}
				return writeJSON(cmd.OutOrStdout(), list)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "SEQ\tDEAD AT\tREASON\tDELIVERIES\tJOB\tTAG\tLAST ERROR\n")
			for _, dl := range dls {
				fmt.Fprintf(w, "%d\t%s\t%s\t%d\t%s\t%s\t%s\n", dl.Sequence, dl.DeadAt.Format(time.RFC3339),
					dl.Reason, dl.Deliveries, dl.Job.Key(), dl.Job.Tag, dl.LastError)
			}
			return w.Flush()
		},
	}
	ls.Flags().IntVar(&limit, "limit", 100, "list at most this many (0: all)")
	ls.Flags().BoolVar(&asJSON, "json", false, "print a JSON array instead of a table")

	var all bool
	retry := &cobra.Command{
		Use:   "retry [SEQ...|--all]",
		Short: "Queue dead letters again and remove them from the dead-letter stream",
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) > 0) {
				return errors.New("give dead-letter sequence numbers or --all")
			}
			q, closeConn, err := f.open(cmd.Context())
			if err != nil {
				return err
			}
			defer closeConn()
			if all {
				n, err := q.RetryAllDeadLetters(cmd.Context())
				fmt.Fprintf(cmd.OutOrStdout(), "requeued %d dead letters\n", n)
				return err
			}
			for _, a := range args {
				seq, err := strconv.ParseUint(a, 10, 64)
				if err != nil {
					return fmt.Errorf("sequence %q: %w", a, err)
				}
				ack, err := q.RetryDeadLetter(cmd.Context(), seq)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "requeued dead letter %d as job %d\n", seq, ack.Sequence)
			}
			return nil
		},
	}
	retry.Flags().BoolVar(&all, "all", false, "retry every dead letter")
	cmd.AddCommand(ls, retry)
	return cmd
}
