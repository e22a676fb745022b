// The Prometheus text format: HELP and TYPE lines, labels quoted and escaped, one sample a line.
import { expect, it } from 'vitest';
import { renderMetrics } from '../../src/runtime/metrics.ts';

it('renders gauges and counters in the Prometheus text format, escaping label values', () => {
  const text = renderMetrics([
    { name: 'is_master', help: 'Whether this replica is master.', type: 'gauge', samples: [{ value: 1 }] },
    {
      name: 'peer_connected',
      help: 'Peer link up.',
      type: 'gauge',
      samples: [
        { labels: { peer: '2' }, value: 1 },
        { labels: { peer: 'a"b\\c\nd' }, value: 0 },
      ],
    },
    { name: 'fsyncs_total', help: 'Durable commits.', type: 'counter', samples: [{ value: 12 }] },
    { name: 'lease_remaining_seconds', help: 'x', type: 'gauge', samples: [{ value: Number.POSITIVE_INFINITY }] },
  ]);
  expect(text).toBe(
    [
      '# HELP paxlock_is_master Whether this replica is master.',
      '# TYPE paxlock_is_master gauge',
      'paxlock_is_master 1',
      '# HELP paxlock_peer_connected Peer link up.',
      '# TYPE paxlock_peer_connected gauge',
      'paxlock_peer_connected{peer="2"} 1',
      'paxlock_peer_connected{peer="a\\"b\\\\c\\nd"} 0',
      '# HELP paxlock_fsyncs_total Durable commits.',
      '# TYPE paxlock_fsyncs_total counter',
      'paxlock_fsyncs_total 12',
      '# HELP paxlock_lease_remaining_seconds x',
      '# TYPE paxlock_lease_remaining_seconds gauge',
      'paxlock_lease_remaining_seconds +Inf',
      '',
    ].join('\n'),
  );
});
