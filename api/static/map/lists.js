// The community's progress (its rates with numerators and denominators) and the work list.

import { get, problemText } from './api.js';
import { KIND_NAMES, count, h, metres, percent } from './ui.js';

const RATES = [
  // key, label, numerator, denominator, rate
  ['on_map', '上图率 On map', 'buildings_on_map', 'buildings', 'on_map_rate'],
  ['coverage', '覆盖率 Coverage', 'footprints_covered', 'footprints', 'coverage_rate'],
  ['labeling', '标注率 Labelling', 'buildings_labeled', 'buildings_on_map', 'labeling_rate'],
  ['population', '人口上图率 Population on map', 'residents_on_map', 'residents', 'population_on_map_rate'],
  ['organizations', '单位上图率 Organizations on map', 'organizations_on_map', 'organizations', 'org_on_map_rate'],
  ['verified', '核实率 Verified', 'buildings_verified', 'buildings', 'verified_rate'],
];

export class Lists {
  constructor(ctx) {
    this.ctx = ctx;
    this.progress = null;
    this.worklistSeq = 0;
    this.progressSeq = 0;
    document.getElementById('worklist-refresh').addEventListener('click', () => this.loadWorklist());
  }

  async loadProgress() {
    const code = this.ctx.state.community;
    if (!code) return;
    const seq = ++this.progressSeq;
    const result = await get(`/communities/${encodeURIComponent(code)}/progress`);
    if (seq !== this.progressSeq) return;
    if (result.ok) this.showProgress(result.data);
    else this.ctx.showMessage(`Progress: ${problemText(result)}`, 'error');
  }

  showProgress(progress) {
    if (!progress || progress.code !== this.ctx.state.community) return;
    const before = this.progress;
    this.progress = progress;
    this.progressSeq++; // a reply still on its way is older than this one
    const verified = progress.verified_rate === null || progress.verified_rate === undefined ? '' : ` · 核实 ${percent(progress.verified_rate)}`;
    document.getElementById('progress-name').textContent = (progress.name ? `· ${progress.name}` : '') + verified;
    const rows = RATES.map(([key, label, num, den, rate]) => {
      const changed = before && (before[num] !== progress[num] || before[den] !== progress[den]);
      return h(
        'tr',
        {
          class: changed ? 'changed' : null,
          'data-testid': `rate-${key}`,
          'data-numerator': progress[num] ?? '',
          'data-denominator': progress[den] ?? '',
          'data-rate': progress[rate] ?? '',
        },
        h('th', { scope: 'row' }, label),
        h('td', { class: 'num' }, `${count(progress[num])} / ${count(progress[den])}`),
        h('td', { class: 'pct' }, percent(progress[rate])),
      );
    });
    const asOf = progress.as_of ? `截至 as of ${progress.as_of}` : '';
    const cycle = progress.cycle_days ? ` · 核实周期 cycle ${progress.cycle_days} d` : '';
    document.getElementById('progress-body').replaceChildren(
      h('table', { class: 'rates' }, h('tbody', {}, rows)),
      h('p', { class: 'muted' }, asOf + cycle),
    );
  }

  async loadWorklist() {
    const code = this.ctx.state.community;
    if (!code) return;
    const seq = ++this.worklistSeq;
    const params = new URLSearchParams();
    const p = this.ctx.state.position;
    if (p) {
      params.set('lon', p.lon.toFixed(7));
      params.set('lat', p.lat.toFixed(7));
    }
    const query = params.toString();
    const result = await get(`/communities/${encodeURIComponent(code)}/worklist${query ? `?${query}` : ''}`);
    if (seq !== this.worklistSeq) return;
    const list = document.getElementById('worklist');
    if (!result.ok) {
      list.replaceChildren(h('li', { class: 'muted' }, `Work list: ${problemText(result)}`));
      return;
    }
    const items = result.data.items || [];
    if (!items.length) {
      list.replaceChildren(h('li', { class: 'muted' }, '没有待办 Nothing left to do here.'));
      return;
    }
    list.replaceChildren(...items.map((item) => this.entry(item)));
  }

  entry(item) {
    const button = h(
      'button',
      { type: 'button', 'data-testid': 'worklist-item', 'data-kind': item.kind, 'data-id': item.id },
      h('span', { class: `badge ${item.kind}` }, KIND_NAMES[item.kind] || item.kind),
      h('span', { class: 'label' }, item.label || item.id),
      h('span', { class: 'dist' }, metres(item.distance_m)),
    );
    button.addEventListener('click', () => this.go(item));
    return h('li', {}, button);
  }

  go(item) {
    const { map } = this.ctx;
    const placed = item.lon !== null && item.lon !== undefined && item.lat !== null && item.lat !== undefined;
    if (placed) map.flyTo({ center: [item.lon, item.lat], zoom: 17, duration: 700, padding: this.ctx.fitPadding(0) });
    if (item.kind === 'gap') {
      if (this.ctx.state.config.may_edit) {
        this.ctx.showMessage('未登记的轮廓 A reference outline nobody registered: use “Draw new building” over it.', 'info');
      }
      return;
    }
    this.ctx.openBuilding(item.id, { fly: !placed });
  }
}
