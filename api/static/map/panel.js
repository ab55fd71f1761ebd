// The building panel: what the registry holds about one building, its verification
// history, and the field actions (verify, not found, disputed, fix the outline, confirm
// or reject a demolition). Writes send If-Match with the version the officer saw: a 409
// shows who changed it meanwhile and never overwrites silently.

import { call, get, problemText } from './api.js';
import { ACTION_NAMES, STATE_NAMES, STATUS_NAMES, count, h, metres, when } from './ui.js';

const ACTIONS = [
  ['verified', '✓ 已核实 Verified', 'verified'],
  ['not_found', '✗ 未找到 Not found', 'not-found'],
  ['disputed', '? 有争议 Disputed', 'disputed'],
];

export class BuildingPanel {
  constructor(ctx) {
    this.ctx = ctx;
    this.root = document.getElementById('tab-building');
    this.seq = 0;
    this.busy = false;
  }

  get building() {
    return this.ctx.state.building;
  }

  /** GET the building and show it; returns the detail, or null (the error is shown). */
  async open(id) {
    const seq = ++this.seq;
    this.root.setAttribute('aria-busy', 'true');
    const result = await get(`/buildings/${encodeURIComponent(id)}`);
    if (seq !== this.seq) return null;
    this.root.removeAttribute('aria-busy');
    if (!result.ok) {
      this.ctx.showMessage(`楼栋 ${id}: ${problemText(result)}`, 'error');
      return null;
    }
    if (this.ctx.editor.active) this.ctx.editor.cancel();
    this.show(result.data, result.etag || `"v${result.data.version}"`);
    return result.data;
  }

  /** Show ``detail`` (from a GET or an action's reply) with its ETag. */
  show(detail, etag) {
    this.seq++; // a GET still on its way is older than this
    const { state } = this.ctx;
    state.building = detail;
    state.etag = etag;
    document.body.dataset.building = detail.id;
    this.ctx.setSelection(detail.geometry);
    this.render();
  }

  clear() {
    this.ctx.state.building = null;
    this.ctx.state.etag = null;
    delete document.body.dataset.building;
    this.ctx.setSelection(null);
    this.root.replaceChildren(h('p', { class: 'muted' }, '点击地图上的楼栋 Tap a building on the map.'));
  }

  render() {
    const b = this.building;
    const { config } = this.ctx.state;
    const movable = config.may_edit && b.status !== 'demolished';
    const addresses = (b.addresses || []).map((a) =>
      h(
        'li',
        { 'data-code': a.code },
        a.label || a.code,
        a.door_plate ? null : h('span', { class: 'muted' }, ' (无门牌位置 no door plate)'),
        movable
          ? h(
              'button',
              { type: 'button', class: 'small', 'data-testid': `move-plate-${a.code}`, onclick: () => this.pickDoorPlate(a) },
              a.door_plate ? '移门牌 Move plate' : '放门牌 Place plate',
            )
          : null,
      ),
    );
    const facts = [
      ['编号 Id', h('code', { 'data-testid': 'building-id' }, b.id)],
      ['社区 Community', `${b.community_name || ''} ${b.community_code || ''}`.trim()],
      ['层数 Floors', count(b.floors)],
      ['用途 Use', b.use || '—'],
      ['状态 Status', h('span', { class: `badge ${b.status}`, 'data-testid': 'building-status' }, STATUS_NAMES[b.status] || b.status)],
      [
        '核实 Verification',
        h(
          'span',
          { class: `badge ${b.verification}`, 'data-testid': 'building-verification', 'data-state': b.verification },
          STATE_NAMES[b.verification] || b.verification,
        ),
      ],
      ['核实时间 Verified', b.verified_at ? `${when(b.verified_at)} · ${b.verified_by || ''}` : '—'],
      ['版本 Version', h('span', { 'data-testid': 'building-version' }, String(b.version))],
      ['房间 Rooms', count(b.room_count)],
    ];
    if (b.residents !== null && b.residents !== undefined) facts.push(['实有人口 Residents', count(b.residents)]);
    if (!b.geometry) facts.push(['轮廓 Outline', h('strong', {}, '未上图 not on the map')]);

    const parts = [
      h('div', { class: 'feedback', 'data-testid': 'feedback' }),
      h('h2', { 'data-testid': 'building-title' }, b.name || (b.addresses?.[0]?.label ?? b.id)),
      addresses.length
        ? h('ul', { class: 'addresses', 'data-testid': 'building-addresses' }, addresses)
        : h('p', { class: 'muted', 'data-testid': 'building-addresses' }, '无标准地址 No standard address'),
      h('dl', {}, facts.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    ];
    if (config.may_edit) parts.push(this.actions());
    parts.push(this.rooms(), this.history());
    this.root.replaceChildren(h('article', { class: 'building', 'data-testid': 'building', 'data-id': b.id }, parts));
  }

  feedback(...nodes) {
    const box = this.root.querySelector('.feedback');
    if (box) box.replaceChildren(...nodes);
  }

  actions() {
    const b = this.building;
    const note = h('textarea', { id: 'action-note', 'data-testid': 'action-note', maxlength: 2000, placeholder: '备注 Note (optional)' });
    const photo = h('input', {
      id: 'action-photo',
      type: 'file',
      accept: 'image/jpeg,image/png',
      capture: 'environment',
      'data-testid': 'action-photo',
    });
    const buttons = ACTIONS.map(([value, label, cls]) =>
      h('button', { type: 'button', class: cls, 'data-testid': `action-${value}`, onclick: () => this.verify(value) }, label),
    );
    const outline = b.geometry
      ? h('button', { type: 'button', 'data-testid': 'action-fix-outline', onclick: () => this.ctx.editor.startEdit(b) }, '✎ 修正轮廓 Fix outline')
      : h('button', { type: 'button', class: 'primary', 'data-testid': 'action-place-outline', onclick: () => this.ctx.editor.startDraw('place', b) }, '✎ 绘制轮廓 Place outline');
    const section = [
      h('h3', {}, '现场核实 Field check'),
      h('div', { class: 'buttons' }, buttons),
      h('label', {}, '备注 Note', note),
      h('label', {}, '照片 Photo (JPEG/PNG)', photo),
      h('div', { class: 'buttons' }, outline),
    ];
    if (b.verification === 'not_found' && b.status !== 'demolished') {
      const demolitionNote = h('textarea', { 'data-testid': 'demolition-note', maxlength: 2000, placeholder: '备注 Note (optional)' });
      section.push(
        h(
          'div',
          { class: 'notice', 'data-testid': 'demolition' },
          h('p', {}, '已报告未找到：确认拆除还是驳回？ Reported not found: confirm it is demolished, or reject?'),
          demolitionNote,
          h(
            'div',
            { class: 'buttons' },
            h('button', { type: 'button', class: 'not-found', 'data-testid': 'demolition-confirm', onclick: () => this.demolition(true, demolitionNote.value) }, '确认拆除 Confirm demolished'),
            h('button', { type: 'button', 'data-testid': 'demolition-reject', onclick: () => this.demolition(false, demolitionNote.value) }, '驳回 Reject'),
          ),
        ),
      );
    }
    return h('section', { class: 'actions', 'data-testid': 'actions' }, section);
  }

  rooms() {
    const b = this.building;
    const rooms = b.rooms || [];
    if (!rooms.length) return h('p', { class: 'muted' }, '无房间 No rooms registered.');
    const persons = rooms.some((r) => r.residents !== null && r.residents !== undefined);
    const head = h('tr', {}, h('th', {}, '单元 Unit'), h('th', {}, '楼层 Floor'), h('th', {}, '房号 No.'), h('th', {}, '用途 Use'), persons ? h('th', {}, '人数 Residents') : null);
    const rows = rooms.map((r) =>
      h('tr', {}, h('td', {}, r.unit ?? '—'), h('td', {}, count(r.floor)), h('td', {}, r.number ?? '—'), h('td', {}, r.use ?? '—'), persons ? h('td', {}, count(r.residents)) : null),
    );
    return h(
      'details',
      { class: 'block', 'data-testid': 'rooms' },
      h('summary', {}, `房间 Rooms (${rooms.length})`),
      h('table', { class: 'rooms' }, h('thead', {}, head), h('tbody', {}, rows)),
    );
  }

  history() {
    const entries = this.building.history || [];
    const items = entries.map((e) => {
      const change = [];
      const oldState = e.old?.verification;
      const newState = e.new?.verification;
      if (newState) change.push(oldState ? `${oldState} → ${newState}` : newState);
      if (e.new && 'status' in e.new) change.push(`status ${e.old?.status ?? '—'} → ${e.new.status}`);
      if ((e.new && 'geometry' in e.new) || (e.new && 'footprint' in e.new)) change.push('outline changed 轮廓已改');
      if (e.new && 'door_plate' in e.new) change.push(`门牌 door plate of ${e.new.address}`);
      return h(
        'li',
        { class: e.far ? 'far' : null, 'data-testid': 'history-entry', 'data-action': e.action, 'data-far': String(Boolean(e.far)) },
        h('div', {}, h('span', { class: `badge ${e.action}` }, ACTION_NAMES[e.action] || e.action), ' ', e.account || ''),
        h('div', { class: 'when' }, when(e.recorded_at), e.distance_m !== null && e.distance_m !== undefined ? ` · ${metres(e.distance_m)}` : ''),
        e.far ? h('div', { class: 'badge far', 'data-testid': 'history-far' }, `⚠ > ${this.ctx.state.config.far_m} m 距楼栋较远 far from the building`) : null,
        change.length ? h('div', { class: 'muted' }, change.join('; ')) : null,
        e.note ? h('div', {}, e.note) : null,
        e.photo_url
          ? h('a', { href: e.photo_url, target: '_blank', rel: 'noopener', 'data-testid': 'history-photo' }, h('img', { class: 'thumb', src: e.photo_url, alt: '照片 photo', loading: 'lazy' }))
          : null,
      );
    });
    return h(
      'details',
      { class: 'block', open: true, 'data-testid': 'history' },
      h('summary', {}, `核实记录 History (${entries.length})`),
      items.length ? h('ol', { class: 'history' }, items) : h('p', { class: 'muted' }, '尚无记录 No verification yet.'),
    );
  }

  setBusy(busy) {
    this.busy = busy;
    for (const button of this.root.querySelectorAll('.actions button')) button.disabled = busy;
  }

  // ------------------------------------------------------------ actions

  async verify(value) {
    const b = this.building;
    if (!b || this.busy) return;
    const note = this.root.querySelector('#action-note')?.value.trim() || '';
    const file = this.root.querySelector('#action-photo')?.files?.[0] || null;
    const { config } = this.ctx.state;
    if (file) {
      if (!['image/jpeg', 'image/png'].includes(file.type)) {
        this.ctx.showMessage('照片须为 JPEG 或 PNG. The photo must be a JPEG or PNG.', 'error');
        return;
      }
      if (file.size > config.photo_max_kb * 1024) {
        this.ctx.showMessage(`照片过大 The photo is ${Math.ceil(file.size / 1024)} kB; at most ${config.photo_max_kb} kB.`, 'error');
        return;
      }
    }
    this.setBusy(true);
    this.feedback(h('p', { class: 'muted' }, '正在定位并保存… Locating and saving…'));
    try {
      const position = await this.ctx.currentPosition();
      const path = `/buildings/${encodeURIComponent(b.id)}/verifications`;
      let result;
      if (file) {
        const form = new FormData();
        form.append('state', value);
        if (note) form.append('note', note);
        if (position) {
          form.append('lon', String(position.lon));
          form.append('lat', String(position.lat));
          if (position.accuracy !== null && position.accuracy !== undefined) form.append('accuracy', String(position.accuracy));
        }
        form.append('photo', file, file.name);
        result = await call('POST', path, { form, ifMatch: this.ctx.state.etag });
      } else {
        const body = { state: value };
        if (note) body.note = note;
        if (position) body.position = { lon: position.lon, lat: position.lat, accuracy: position.accuracy };
        result = await call('POST', path, { json: body, ifMatch: this.ctx.state.etag });
      }
      this.afterWrite(result, () => this.verify(value), '核实已保存 Saved.');
    } finally {
      this.setBusy(false);
    }
  }

  /** The next tap on the map places address ``a``'s door plate (Esc or the button cancels). */
  pickDoorPlate(a) {
    const b = this.building;
    if (!b || this.busy) return;
    const cancel = h('button', { type: 'button', 'data-testid': 'plate-cancel' }, '取消 Cancel');
    this.feedback(
      h(
        'div',
        { class: 'notice', 'data-testid': 'plate-hint' },
        h('p', {}, `点击地图上门牌 ${a.label || a.code} 的位置。 Tap the map where the door plate of ${a.label || a.code} is.`),
        cancel,
      ),
    );
    cancel.addEventListener('click', () => {
      this.ctx.pickPoint(null);
      this.feedback();
    });
    this.ctx.pickPoint((lngLat) => this.moveDoorPlate(a, lngLat));
  }

  async moveDoorPlate(a, lngLat) {
    const b = this.building;
    if (!b || this.busy) return;
    this.setBusy(true);
    try {
      const path = `/buildings/${encodeURIComponent(b.id)}/addresses/${encodeURIComponent(a.code)}/door-plate`;
      const result = await call('PUT', path, { json: { lon: lngLat.lng, lat: lngLat.lat }, ifMatch: this.ctx.state.etag });
      if (this.afterWrite(result, () => this.moveDoorPlate(a, lngLat), '门牌已放置 Door plate placed.')) this.feedback();
    } finally {
      this.setBusy(false);
    }
  }

  async demolition(confirm, note) {
    const b = this.building;
    if (!b || this.busy) return;
    this.setBusy(true);
    try {
      const body = { confirm };
      if (note && note.trim()) body.note = note.trim();
      const result = await call('POST', `/buildings/${encodeURIComponent(b.id)}/demolition`, {
        json: body,
        ifMatch: this.ctx.state.etag,
      });
      if (result.status === 403) {
        this.feedback(h('div', { class: 'conflict', 'data-testid': 'demolition-forbidden' }, h('p', {}, `不能确认 ${problemText(result)}`)));
        this.ctx.showMessage(problemText(result), 'error');
        return;
      }
      this.afterWrite(result, () => this.demolition(confirm, note), confirm ? '已确认拆除 Demolition confirmed.' : '已驳回 Rejected: now disputed.');
    } finally {
      this.setBusy(false);
    }
  }

  /** The common ending of a write: 2xx updates everything; 409/428 explain; else the detail. */
  afterWrite(result, retry, done) {
    if (result.ok) {
      this.ctx.applyResult(result);
      const verification = result.data.verification;
      if (verification?.far) this.showFar(verification);
      this.ctx.showMessage(done, 'ok');
      return true;
    }
    if (result.status === 409 && result.problem?.current) {
      this.showConflict(result.problem, retry);
    } else if (result.status === 428) {
      this.showPrecondition(result.problem);
    } else {
      this.feedback();
      this.ctx.showMessage(problemText(result), 'error');
    }
    return false;
  }

  showFar(verification) {
    const far = this.ctx.state.config.far_m;
    const distance = verification.distance_m !== null && verification.distance_m !== undefined ? ` (${metres(verification.distance_m)})` : '';
    this.feedback(
      h('div', { class: 'far-flag', role: 'alert', 'data-testid': 'far-flag' }, `⚠ 距楼栋超过 ${far} 米 More than ${far} m from the building${distance}: recorded and flagged.`),
    );
  }

  showConflict(problem, retry) {
    const current = problem.current;
    const editing = this.ctx.editor.active;
    const who = current.verified_by ? ` by ${current.verified_by}` : '';
    const at = current.verified_at ? ` at ${when(current.verified_at)}` : '';
    const reload = h('button', { type: 'button', 'data-testid': 'conflict-reload' }, '载入最新 Load the current state');
    const again = h('button', { type: 'button', class: 'primary', 'data-testid': 'conflict-retry' }, editing ? '仍保存我的轮廓 Save my outline over it' : '仍提交 Apply my change to it');
    const box = h(
      'div',
      { class: 'conflict', role: 'alert', 'data-testid': 'conflict' },
      h('h3', {}, '冲突 Someone else changed this building'),
      h('p', {}, `Someone else changed this building while you had it open: it is now version ${current.version}, ${STATE_NAMES[current.verification] || current.verification}${who}${at}.`),
      problem.detail ? h('p', { class: 'muted' }, problem.detail) : null,
      h('p', {}, editing ? '你的修改仍在地图上，尚未保存。 Your edit is still on the map, not saved.' : '你的操作未保存。 Your action was not saved.'),
      h('div', { class: 'buttons' }, reload, again),
    );
    reload.addEventListener('click', () => {
      if (this.ctx.editor.active) this.ctx.editor.cancel();
      this.show(current, `"v${current.version}"`);
      this.ctx.refreshTiles();
    });
    again.addEventListener('click', () => {
      // the officer chose to apply the change to the version they have now seen
      this.ctx.state.etag = `"v${current.version}"`;
      box.remove();
      retry();
    });
    this.feedback(box);
    this.ctx.selectTab('building');
    this.root.scrollTop = 0;
    box.scrollIntoView({ block: 'nearest' });
  }

  showPrecondition(problem) {
    const reload = h('button', { type: 'button', 'data-testid': 'precondition-reload' }, '重新载入 Reload the building');
    reload.addEventListener('click', () => {
      const id = this.building?.id;
      if (this.ctx.editor.active) this.ctx.editor.cancel();
      if (id) this.open(id);
    });
    this.feedback(
      h(
        'div',
        { class: 'conflict', role: 'alert', 'data-testid': 'precondition' },
        h('h3', {}, '需要版本 The version you edited is needed'),
        h('p', {}, problem?.detail || 'The server needs to know which version you edited (If-Match).'),
        h('p', {}, 'Reload the building and make the change again.'),
        h('div', { class: 'buttons' }, reload),
      ),
    );
  }
}
