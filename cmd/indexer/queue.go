package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// queueFlags locate the job streams.
type queueFlags struct {
	natsURL string
	cfg     queue.Config
}

func (f *queueFlags) register(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.natsURL, "nats-url", envOr("INDEXER_NATS_URL", nats.DefaultURL), "NATS server URL (env INDEXER_NATS_URL)")
	pf.StringVar(&f.cfg.Stream, "stream", envOr("INDEXER_QUEUE_STREAM", queue.DefaultStream), "work-queue stream (env INDEXER_QUEUE_STREAM)")
	pf.StringVar(&f.cfg.DLQStream, "dlq-stream", envOr("INDEXER_QUEUE_DLQ_STREAM", queue.DefaultDLQStream), "dead-letter stream (env INDEXER_QUEUE_DLQ_STREAM)")
	pf.StringVar(&f.cfg.Consumer, "consumer", envOr("INDEXER_QUEUE_CONSUMER", queue.DefaultConsumer), "durable consumer (env INDEXER_QUEUE_CONSUMER)")
	pf.StringVar(&f.cfg.SubjectPrefix, "subject-prefix", envOr("INDEXER_QUEUE_SUBJECT_PREFIX", queue.DefaultSubjectPrefix), "subject prefix of jobs (env INDEXER_QUEUE_SUBJECT_PREFIX)")
}

// open binds to the existing streams; it never creates or changes them.
func (f *queueFlags) open(ctx context.Context) (*queue.Queue, func(), error) {
	nc, err := nats.Connect(f.natsURL, nats.Name("soci-indexer-cli"), nats.Timeout(5*time.Second))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w", f.natsURL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
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
		Short: "Inspect the job queue and its dead letters",
	}
	f.register(cmd)
	cmd.AddCommand(newQueueLsCmd(&f), newDLQCmd(&f))
	return cmd
}

func newQueueLsCmd(f *queueFlags) *cobra.Command {
	return &cobra.Command{
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
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "STREAM\tMESSAGES\tBYTES\tFIRST SEQ\tLAST SEQ\n")
			fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\n\n", st.Stream, st.Messages, st.Bytes, st.FirstSeq, st.LastSeq)
			fmt.Fprintf(w, "CONSUMER\tPENDING\tACK PENDING\tREDELIVERED\tWAITING\n")
			fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\n\n", st.Consumer, st.Pending, st.AckPending, st.Redelivered, st.Waiting)
			fmt.Fprintf(w, "DEAD LETTERS\tMESSAGES\n")
			fmt.Fprintf(w, "%s\t%d\n", st.DLQStream, st.DeadLetters)
			return w.Flush()
		},
	}
}

func newDLQCmd(f *queueFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "dlq", Short: "List and retry dead-lettered jobs"}
	var limit int
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
