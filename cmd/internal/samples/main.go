package samples

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/outpost-edge/outpost/broker/client"
	"github.com/outpost-edge/outpost/cmd/internal/cli"
)

// runners are the samples by the name `outpost sample NAME` knows them by.
var runners = map[string]func(context.Context, *client.Client, *slog.Logger) error{
	"tempsensor": func(ctx context.Context, c *client.Client, log *slog.Logger) error {
		return RunTempSensor(ctx, c, SensorOptions{Logger: log})
	},
	"filter": func(ctx context.Context, c *client.Client, log *slog.Logger) error {
		return RunFilter(ctx, c, FilterOptions{Logger: log})
	},
}

// Names are the samples Run knows, sorted.
func Names() []string {
	names := make([]string, 0, len(runners))
	for n := range runners {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// TempSensorMain is the main of outpost-tempsensor: the simulated
// temperature sensor as a module of an edge deployment. It exits 0 on
// SIGTERM or SIGINT, 1 with one `error: …` line on stderr otherwise.
func TempSensorMain() { os.Exit(moduleMain("tempsensor")) }

// FilterMain is the main of outpost-filter: the temperature filter as a
// module of an edge deployment, with the exit rules of TempSensorMain.
func FilterMain() { os.Exit(moduleMain("filter")) }

// moduleMain runs a sample until SIGTERM and returns the exit status.
func moduleMain(sample string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := Run(ctx, sample, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 1
	}
	return 0
}

// Run connects the sample module name from the environment the edge's
// supervisor gives it (client.FromEnvironment) and runs it until ctx is
// done; it logs to logs. A clean stop returns nil.
func Run(ctx context.Context, name string, logs io.Writer) error {
	run, ok := runners[name]
	if !ok {
		return fmt.Errorf("no sample %q (samples: %s)", name, strings.Join(Names(), ", "))
	}
	log := slog.New(slog.NewTextHandler(logs, nil)).With("sample", name)
	c, err := client.FromEnvironment(client.WithLogger(log))
	if err != nil {
		return err
	}
	log = log.With("module", c.ModuleID())
	log.Info("starting", "version", cli.Version, "device", c.DeviceID())
	err = run(ctx, c, log)
	c.Close()
	if err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}
