/** Prometheus metrics of the scheduler process (`/metrics`), on one prom-client registry. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** The scheduler's registry; `/metrics` renders it. */
export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: "shardworks_scheduler_" });

/** Every metric the scheduler exports. */
export const metrics = {
  requests: new Counter({
    name: "shardworks_api_requests_total",
    help: "API requests by method, route and status",
    labelNames: ["method", "route", "status"] as const,
    registers: [registry],
  }),
  placed: new Counter({
    name: "shardworks_placements_total",
    help: "Sandboxes bound to a node",
    registers: [registry],
  }),
  rescheduled: new Counter({
    name: "shardworks_rescheduled_total",
    help: "Sandboxes put back to pending because their node was lost before they started",
    registers: [registry],
  }),
  lost: new Counter({
    name: "shardworks_lost_sandboxes_total",
    help: "Sandboxes failed because their node was lost after their run began (never rerun)",
    registers: [registry],
  }),
  pending: new Gauge({
    name: "shardworks_pending_sandboxes",
    help: "Pending sandboxes seen by the last placement pass",
    registers: [registry],
  }),
  placerLeader: new Gauge({
    name: "shardworks_placer_leader",
    help: "1 while this process is the elected placer",
    registers: [registry],
  }),
  placementSeconds: new Histogram({
    name: "shardworks_placement_bind_seconds",
    help: "Time to bind one sandbox (etcd transaction)",
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1],
    registers: [registry],
  }),
};
