package samples

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/outpost-edge/outpost/broker/client"
	"github.com/outpost-edge/outpost/cmd/internal/cli"
)

// TempSensorMain is the main of outpost-tempsensor: the simulated
// temperature sensor as a module of an edge deployment. It exits 0 on
// SIGTERM or SIGINT, 1 with one `error: …` line on stderr otherwise.
func TempSensorMain() {
	os.Exit(moduleMain("tempsensor", func(ctx context.Context, c *client.Client, log *slog.Logger) error {
		return RunTempSensor(ctx, c, SensorOptions{Logger: log})
	}))
}

// FilterMain is the main of outpost-filter: the temperature filter as a
// module of an edge deployment, with the exit rules of TempSensorMain.
func FilterMain() {
	os.Exit(moduleMain("filter", func(ctx context.Context, c *client.Client, log *slog.Logger) error {
		return RunFilter(ctx, c, FilterOptions{Logger: log})
	}))
}

// moduleMain connects a module from the environment the edge's supervisor
// gives it and runs it until SIGTERM; it returns the exit status.
func moduleMain(sample string, run func(context.Context, *client.Client, *slog.Logger) error) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("sample", sample)
	c, err := client.FromEnvironment(client.WithLogger(log))
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 1
	}
	log = log.With("module", c.ModuleID())
	log.Info("starting", "version", cli.Version, "device", c.DeviceID())
	err = run(ctx, c, log)
	c.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 1
	}
	log.Info("stopped")
	return 0
}
