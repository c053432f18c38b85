package main

import (
	"context"
	"fmt"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// sink is an OTLP/gRPC trace receiver that counts spans and keeps only
// their total duration per span name: the agent and the comparator export
// to it, so neither pays for a collector and memory stays flat over a long
// run.
type sink struct {
	collectorpb.UnimplementedTraceServiceServer
	spans atomic.Uint64
	lis   net.Listener
	srv   *grpc.Server
	done  chan struct{}

	mu     sync.Mutex
	byName map[string]durations
}

// durations sums the durations of one span name.
type durations struct {
	Count uint64
	Total time.Duration
}

// Mean is the mean duration.
func (d durations) Mean() time.Duration {
	if d.Count == 0 {
		return 0
	}
	return d.Total / time.Duration(d.Count)
}

// durationsByName returns a copy of the per-name sums.
func (s *sink) durationsByName() map[string]durations {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.byName)
}

// spanDurations subtracts the sums before from after: the spans of a run.
func spanDurations(before, after map[string]durations) map[string]durations {
	out := map[string]durations{}
	for name, a := range after {
		b := before[name]
		if a.Count > b.Count {
			out[name] = durations{Count: a.Count - b.Count, Total: a.Total - b.Total}
		}
	}
	return out
}

func startSink() (*sink, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for OTLP: %w", err)
	}
	s := &sink{lis: lis, srv: grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20)), done: make(chan struct{}), byName: map[string]durations{}}
	collectorpb.RegisterTraceServiceServer(s.srv, s)
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(lis)
	}()
	return s, nil
}

// Export counts the request's spans.
func (s *sink) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	var n uint64
	s.mu.Lock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			n += uint64(len(ss.Spans))
			for _, sp := range ss.Spans {
				d := s.byName[sp.Name]
				d.Count++
				if sp.EndTimeUnixNano > sp.StartTimeUnixNano {
					d.Total += time.Duration(sp.EndTimeUnixNano - sp.StartTimeUnixNano)
				}
				s.byName[sp.Name] = d
			}
		}
	}
	s.mu.Unlock()
	s.spans.Add(n)
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

func (s *sink) endpoint() string { return s.lis.Addr().String() }

func (s *sink) close() {
	s.srv.Stop()
	<-s.done
}
