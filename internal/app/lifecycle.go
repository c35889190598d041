package app

import (
	"context"
	"log/slog"
)

// lifecycle holds what Serve started, to stop it in the reverse order: a
// component starts after what it depends on and so stops, and is joined,
// before it. Every exit of Serve (a signal, a failed listener, a startup
// error half-way) stops through stopAll, so they all stop alike.
type lifecycle struct {
	log     *slog.Logger
	started []component
}

type component struct {
	name string
	stop func(context.Context) error
}

// start records a component that is now running; stop must return only
// once the component and its goroutines are done.
func (l *lifecycle) start(name string, stop func(context.Context) error) {
	l.started = append(l.started, component{name, stop})
}

// stopAll stops every component started, the last first, each after the
// one before it returned; a failed stop is logged and the others still
// run.
func (l *lifecycle) stopAll(ctx context.Context) {
	for i := len(l.started) - 1; i >= 0; i-- {
		c := l.started[i]
		l.log.Debug("stopping", "component", c.name)
		if err := c.stop(ctx); err != nil {
			l.log.Error("stopping "+c.name, "err", err)
		}
	}
	l.started = nil
}

// goStop runs fn in a goroutine until the stop it returns is called: that
// cancels fn's context and waits for fn to return.
func goStop(fn func(ctx context.Context)) func(context.Context) error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(ctx)
	}()
	return func(context.Context) error {
		cancel()
		<-done
		return nil
	}
}
