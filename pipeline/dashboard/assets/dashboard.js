// The streamgrad dashboard page: frames arrive as server-sent events from /events, once a second.
// Plain browser JavaScript, served as it is (no build step); uPlot draws the charts.
'use strict';

const number = (value, digits = 0) => (value === null || value === undefined || Number.isNaN(value) ? '–' : Number(value).toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }));
const colors = ['#4a6fa5', '#d1495b', '#2a9d8f', '#e9c46a', '#8d6cab', '#f4a261', '#264653', '#9c6644'];
const width = (element) => Math.max(320, element.clientWidth - 8);

/** Time series kept in the page: the server's history, then one point a frame (at most `keep`). */
const keep = 900;
const series = { at: [], samplesPerSecond: [], ingestPerSecond: [], lag: [], loss: [], freshness: [], versions: [] };
const charts = {};
let frames = 0;
let shards = -1;

function timeChart(name, labels, options = {}) {
  const element = document.querySelector(`[data-chart="${name}"]`);
  const chart = new uPlot({
    width: width(element),
    height: 200,
    scales: { x: { time: options.time !== false } },
    axes: [{}, { size: 60 }],
    series: [{}, ...labels.map((label, i) => ({ label, stroke: colors[i % colors.length], width: 1.5, spanGaps: true, ...(options.bars ? { paths: uPlot.paths.bars({ size: [0.8, 40] }), fill: colors[i % colors.length] } : {}) }))],
  }, [[], ...labels.map(() => [])], element);
  charts[name] = { chart, element, labels };
  return chart;
}

function setData(name, data) {
  const entry = charts[name];
  entry.chart.setData(data);
  entry.element.dataset.points = String(data[0].length);
}

/** Charts with one series per shard are rebuilt when the number of shards changes. */
function ensureShardCharts(count) {
  if (count === shards) return;
  shards = count;
  for (const name of ['freshness', 'versions']) {
    charts[name]?.chart.destroy();
    timeChart(name, Array.from({ length: count }, (_, shard) => `shard ${shard}`));
  }
}

function addPoint(point) {
  series.at.push(point.at / 1000);
  series.samplesPerSecond.push(point.samplesPerSecond);
  series.ingestPerSecond.push(point.ingestPerSecond);
  series.lag.push(point.lag);
  series.loss.push(point.loss);
  series.freshness.push(point.freshnessMs);
  series.versions.push(point.versions);
  if (series.at.length > keep) for (const values of Object.values(series)) values.shift();
}

function drawSeries() {
  ensureShardCharts(Math.max(0, ...series.versions.map((v) => v.length)));
  setData('throughput', [series.at, series.samplesPerSecond, series.ingestPerSecond]);
  setData('lag', [series.at, series.lag]);
  setData('loss', [series.at, series.loss]);
  const perShard = (values) => Array.from({ length: shards }, (_, shard) => values.map((v) => v[shard] ?? null));
  setData('freshness', [series.at, ...perShard(series.freshness)]);
  setData('versions', [series.at, ...perShard(series.versions)]);
}

function drawFrame(frame) {
  const { status } = frame;
  const prequential = status.prequential;
  const windows = prequential ? prequential.closed : [];
  document.getElementById('prequential-caption').textContent = `Prequential ${prequential && prequential.classifier ? 'accuracy' : 'loss'} per ${prequential ? number(prequential.windowMs / 1000) : '–'} s event-time window`;
  setData('prequential', [windows.map((w) => w.start / 1000), windows.map((w) => (prequential.classifier ? w.accuracy : w.loss))]);
  setData('staleness', [frame.stalenessHistogram.map((b) => b.upTo), frame.stalenessHistogram.map((b) => b.updates)]);
  kpis(frame);
  tables(frame);
}

function kpis(frame) {
  const { status } = frame;
  const set = (name, text) => (document.querySelector(`[data-kpi="${name}"]`).textContent = text);
  set('samplesPerSecond', number(status.samplesPerSecond));
  set('loss', number(status.loss, 4));
  set('lag', number(status.lag));
  set('versions', status.shards.map((s) => number(s.version)).join(' / ') || '–');
  set('freshness', status.shards.length ? number(Math.max(...status.shards.map((s) => s.freshnessMs))) : '–');
  set('staleness', `${number(status.staleness.p50)} / ${number(status.staleness.p99)}`);
  set('deadLetters', number(status.deadLetters));
  set('refused', number(status.shards.reduce((sum, s) => sum + s.updatesRefused, 0)));
  const e = frame.evaluation;
  if (e) set('holdout', e.accuracy !== undefined ? `accuracy ${number(e.accuracy, 3)} on ${e.source}` : `RMSE ${number(e.rmse, 4)} on ${e.source}`);
}

function fill(id, rows) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...rows.map((cells) => {
    const row = document.createElement('tr');
    for (const cell of cells) row.appendChild(Object.assign(document.createElement('td'), { textContent: cell }));
    return row;
  }));
}

function tables(frame) {
  const { status } = frame;
  fill('partitions', status.partitions.map((p) => [String(p.partition), number(p.rate), number(p.lag), number(p.end), p.committed < 0 ? '–' : number(p.committed), p.owner || '(unassigned)']));
  fill('shards', status.shards.map((s) => [String(s.shard), number(s.version), number(s.samplesApplied), number(s.freshnessMs), `${number(s.staleness.p50)}/${number(s.staleness.p99)}/${number(s.staleness.max)}`, Object.entries(s.refusedByReason).map(([r, n]) => `${r} ${number(n)}`).join(', ') || '0']));
  fill('dead-letters', Object.entries(frame.deadLettersByReason).sort().map(([reason, n]) => [reason, number(n)]));
  fill('ingest', frame.ingest.map((b) => [b.source, b.mqttConnected ? 'connected' : `reconnecting (${b.reconnects})`, number(b.messagesIn), number(b.samplesOut), number(b.deadLetters), number(b.pending), `${number(b.ackLagP50Ms)}/${number(b.ackLagP99Ms)}`]));
}

function connect() {
  const connection = document.getElementById('connection');
  const events = new EventSource('/events');
  events.addEventListener('hello', (event) => {
    const hello = JSON.parse(event.data);
    document.getElementById('namespace').textContent = `${hello.namespace} (input ${hello.inputTopic})`;
    for (const values of Object.values(series)) values.length = 0;
    hello.history.forEach(addPoint);
    drawSeries();
    connection.textContent = 'live';
    connection.className = 'connection live';
  });
  events.addEventListener('frame', (event) => {
    const { frame, point } = JSON.parse(event.data);
    if (series.at.at(-1) !== point.at / 1000) addPoint(point);
    drawSeries();
    drawFrame(frame);
    frames++;
    window.streamgrad.frame = frame;
    document.getElementById('updated').textContent = `updated ${new Date(frame.status.at).toLocaleTimeString()}`;
    document.getElementById('problem').hidden = true;
  });
  events.addEventListener('problem', (event) => {
    const problem = document.getElementById('problem');
    problem.textContent = `reading Kafka failed: ${JSON.parse(event.data).message}`;
    problem.hidden = false;
  });
  events.onerror = () => {
    connection.textContent = 'reconnecting…';
    connection.className = 'connection lost';
  };
}

/** For people at the console and for tests: the newest frame, the frame count, the points each chart holds. */
window.streamgrad = {
  frame: undefined,
  get frames() { return frames; },
  points: (name) => Number(charts[name]?.element.dataset.points ?? 0),
};

timeChart('throughput', ['samples/s trained', 'messages/s ingested']);
timeChart('lag', ['lag']);
timeChart('loss', ['loss']);
timeChart('prequential', ['window score']);
timeChart('staleness', ['updates'], { time: false, bars: true });
ensureShardCharts(0);
window.addEventListener('resize', () => Object.values(charts).forEach(({ chart, element }) => chart.setSize({ width: width(element), height: 200 })));
connect();
