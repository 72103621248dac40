"""configs/metafile.yml: OpenMMLab's model-index format, every config, the README's numbers.

The mm results it quotes (metrics, training memory, released weights) are checked against the
metafiles the installed mmdet and mmseg ship for the mirrored recipe; the official results against
the README's model-zoo table, which must hold exactly the metafile's numbers.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest
import yaml
from zoo import ALL, CONFIGS, MM_COUNTERPARTS, VARIANTS

REPO = CONFIGS.parent
METAFILE = CONFIGS / 'metafile.yml'
# README column -> where the metafile holds it: ('metric', name) or ('metadata', key)
COLUMNS = {
    'official box AP': ('metric', 'box AP (official)'),
    'official mask AP': ('metric', 'mask AP (official)'),
    'official mIoU': ('metric', 'mIoU (official)'),
    'mm box AP': ('metric', 'box AP'),
    'mm mask AP': ('metric', 'mask AP'),
    'mm mIoU': ('metric', 'mIoU'),
    'mm mIoU ms+flip': ('metric', 'mIoU(ms+flip)'),
    'train mem (GB)': ('metadata', 'Training Memory (GB)'),
}
# README subsection of the model zoo -> (task of its main metric, dataset)
SECTIONS = {
    'Object detection (COCO val2017)': ('Object Detection', 'COCO'),
    'Instance segmentation (COCO val2017)': ('Instance Segmentation', 'COCO'),
    'Semantic segmentation (ADE20K val)': ('Semantic Segmentation', 'ADE20K'),
    'Semantic segmentation (Cityscapes val)': ('Semantic Segmentation', 'Cityscapes'),
}
NOT_PUBLISHED = '\u2013'  # en dash


def load_metafile() -> dict:
    return yaml.safe_load(METAFILE.read_text())


def models() -> dict[str, dict]:
    return {model['Name']: model for model in load_metafile()['Models']}


def metrics_of(model: dict) -> dict[str, float]:
    merged = {}
    for result in model['Results']:
        assert not set(merged) & set(result['Metrics']), model['Name']
        merged.update(result['Metrics'])
    return merged


def test_metafile_is_in_model_index_format():
    """Collections, then Models with Name, In Collection, Config, Metadata, Results."""
    text = METAFILE.read_text()
    data = load_metafile()
    assert list(data) == ['Collections', 'Models']
    assert text.index('\nCollections:') < text.index('\nModels:')
    collections = {collection['Name'] for collection in data['Collections']}
    for model in data['Models']:
        assert {'Name', 'In Collection', 'Config', 'Metadata', 'Results'} <= set(model), model
        assert model['In Collection'] in collections
        assert model['Results'], model['Name']
        for result in model['Results']:
            assert set(result) == {'Task', 'Dataset', 'Metrics'}, model['Name']
            assert result['Metrics'] and all(
                isinstance(value, float) for value in result['Metrics'].values())
    assert collections == {model['In Collection'] for model in data['Models']}


def test_model_index_parses_the_metafile():
    """With `modelindex` installed (the tests extra), its loader finds no error; else yaml."""
    if importlib.util.find_spec('modelindex') is None:
        data = load_metafile()
        assert len(data['Models']) == len(ALL)
        return
    import modelindex
    index = modelindex.load(str(METAFILE))
    assert index.check(silent=True) == []
    assert [model.name for model in index.models] == list(models())
    for model in index.models:
        full = model.full_model  # with its collection's metadata
        assert 'ResNeSt' in full.metadata.architecture
        assert full.results[0].metrics == models()[model.name]['Results'][0]['Metrics']


def test_every_config_is_listed_and_every_listed_config_exists():
    listed = {model['Name']: model['Config'] for model in load_metafile()['Models']}
    assert len(listed) == len(load_metafile()['Models'])  # names are unique
    for name, config in listed.items():
        assert config == f'configs/{name}.py'
        assert (REPO / config).is_file(), config
    assert set(listed) == {path.stem for path in CONFIGS.glob('*.py')} == set(ALL)


def mm_metafile_entries() -> dict[str, dict]:
    """The installed mmdet / mmseg ResNeSt metafile entries, by ``mmdet::resnest/<file>``."""
    entries = {}
    for package, filename in (('mmdet', 'metafile.yml'), ('mmseg', 'metafile.yaml')):
        folder = Path(importlib.import_module(package).__file__).parent / '.mim/configs/resnest'
        for model in yaml.safe_load((folder / filename).read_text())['Models']:
            entries[f'{package}::resnest/{Path(model["Config"]).name}'] = model
    return entries


def mm_results(entry: dict) -> list[dict]:
    results = entry['Results']  # mmseg writes one result as a dict
    return results if isinstance(results, list) else [results]


def test_mm_numbers_are_those_of_the_mm_metafiles():
    ours, theirs = models(), mm_metafile_entries()
    assert set(MM_COUNTERPARTS.values()) <= set(theirs)
    for name, counterpart in MM_COUNTERPARTS.items():
        model, entry = ours[name], theirs[counterpart]
        mm_metrics = {key: value for key, value in metrics_of(model).items()
                      if not key.endswith('(official)')}
        expected = {}
        for result in mm_results(entry):
            expected.update(result['Metrics'])
        assert mm_metrics == expected, name
        tasks = {(r['Task'], r['Dataset']) for r in model['Results']}
        assert {(r['Task'], r['Dataset']) for r in mm_results(entry)} <= tasks, name
        memory = entry['Metadata'].get('Training Memory (GB)', entry['Metadata'].get('Memory (GB)'))
        assert model['Metadata'].get('Training Memory (GB)') == memory, name
        assert model['Weights'] == entry['Weights'], name
    for name, variant in VARIANTS.items():  # nothing of mm's is claimed for these
        model = ours[name]
        assert all(key.endswith('(official)') for key in metrics_of(model)), name
        assert 'Weights' not in model and 'Training Memory (GB)' not in model['Metadata']
        base = ours[variant.base]
        assert [(r['Task'], r['Dataset']) for r in model['Results']] == [
            (r['Task'], r['Dataset']) for r in base['Results']
            if any(k.endswith('(official)') for k in r['Metrics'])]


def model_zoo_tables() -> dict[str, list[dict[str, str]]]:
    """The README's model-zoo tables: subsection title -> rows as {column: cell}."""
    readme = (REPO / 'README.md').read_text(encoding='utf-8')
    section = readme.split('\n## Model zoo\n', 1)[1].split('\n## ', 1)[0]
    tables = {}
    for chunk in section.split('\n### ')[1:]:
        title, body = chunk.split('\n', 1)
        lines = [line for line in body.splitlines() if line.startswith('|')]
        if not lines:
            continue
        header = [cell.strip() for cell in lines[0].strip('|').split('|')]
        assert set(lines[1].replace('|', '').strip()) <= {'-', ':', ' '}, title
        tables[title] = [dict(zip(header, (cell.strip() for cell in line.strip('|').split('|')),
                                  strict=True)) for line in lines[2:]]
    return tables


def test_readme_table_has_a_row_per_config_with_the_metafile_numbers():
    tables, ours = model_zoo_tables(), models()
    assert set(tables) == set(SECTIONS)
    rows = {}
    for title, table in tables.items():
        task, dataset = SECTIONS[title]
        for row in table:
            name = re.fullmatch(r'\[(\w+)\]\(configs/(\w+)\.py\)', row['config'])
            assert name and name[1] == name[2], row['config']
            name = name[1]
            assert name not in rows, f'{name} has two rows'
            rows[name] = row
            model = ours[name]
            assert (task, dataset) in {(r['Task'], r['Dataset']) for r in model['Results']}
            shown = {}
            for column, cell in row.items():
                if column in ('config', 'reproduce'):
                    continue
                where, key = COLUMNS[column]
                if cell != NOT_PUBLISHED:
                    shown[(where, key)] = float(cell)
            held = {('metric', key): value for key, value in metrics_of(model).items()}
            if 'Training Memory (GB)' in model['Metadata']:
                held[('metadata', 'Training Memory (GB)')] = model['Metadata'][
                    'Training Memory (GB)']
            assert shown == held, name
            gpus = 8 if dataset == 'COCO' else 4  # the published runs' GPU count
            assert row['reproduce'] == f'`tools/dist_train.sh configs/{name}.py {gpus}`'
    assert set(rows) == set(ALL)


@pytest.mark.parametrize('name', ALL)
def test_config_header_quotes_the_metafile_numbers(name):
    """Each config's opening comment repeats its published numbers."""
    header = (CONFIGS / f'{name}.py').read_text().split('_base_')[0]
    for value in metrics_of(models()[name]).values():
        written = (re.escape(f'{value:.2f}'), re.escape(str(value)))
        assert re.search(rf'(?<![\d.])({"|".join(written)})(?![\d])', header), (name, value)
