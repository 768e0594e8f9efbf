// Command webhook receives registry notifications and turns them into
// durable jobs on NATS JetStream.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "webhook: not built yet")
	os.Exit(1)
}
