import os
import shutil

import pytest

from datasets.lists import (find_cityscapes_samples, label_path_for, make_cityscapes_lists,
                            read_list, sample_name)


def test_label_path_and_name_of_an_image():
    image = 'leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png'
    assert label_path_for(image) == \
        'gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png'
    assert sample_name(image) == 'frankfurt_000000_000294'
    with pytest.raises(ValueError, match='not a Cityscapes image path'):
        label_path_for('images/frankfurt_000000_000294.png')


def test_make_lists_reproduces_the_generator_lists(synthetic_root, synthetic_args, tmp_path):
    root = str(tmp_path / 'copy')
    shutil.copytree(synthetic_root, root)
    list_dir = os.path.join(root, 'list', 'cityscapes')
    generated = {name: open(os.path.join(list_dir, name)).read()
                 for name in sorted(os.listdir(list_dir))}
    shutil.rmtree(list_dir)
    counts = make_cityscapes_lists(root)
    assert sorted(os.listdir(list_dir)) == ['test.lst', 'train.lst', 'trainval.lst', 'val.lst']
    for name, text in generated.items():
        assert open(os.path.join(list_dir, name)).read() == text, name
    train, val = synthetic_args['num_train'], synthetic_args['num_val']
    assert counts == {'train': train, 'val': val, 'trainval': train + val,
                      'test': synthetic_args['num_test']}


def test_lists_are_sorted_tab_separated_and_test_has_no_labels(synthetic_root):
    list_dir = os.path.join(synthetic_root, 'list', 'cityscapes')
    for name in ('train', 'val', 'trainval', 'test'):
        lines = open(os.path.join(list_dir, name + '.lst')).read().splitlines()
        fields = [line.split('\t') for line in lines]
        assert all(len(f) == (1 if name == 'test' else 2) for f in fields), name
        if name != 'trainval':
            assert lines == sorted(lines), name
        for entry in fields:
            assert os.path.isfile(os.path.join(synthetic_root, 'cityscapes', entry[0]))


def test_scan_of_a_missing_folder_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / 'cityscapes' / 'leftImg8bit')):
        find_cityscapes_samples(str(tmp_path))


def test_scan_names_a_missing_label(synthetic_root, tmp_path):
    root = str(tmp_path / 'copy')
    shutil.copytree(synthetic_root, root)
    label = os.path.join(root, 'cityscapes', 'gtFine', 'val', 'lindau',
                         'lindau_000000_000019_gtFine_labelIds.png')
    os.remove(label)
    with pytest.raises(FileNotFoundError, match=label):
        find_cityscapes_samples(root)


def test_read_list_rejects_malformed_lines(tmp_path):
    (tmp_path / 'bad.lst').write_text('a.png\tb.png\nc.png\td.png\te.png\n')
    with pytest.raises(ValueError, match=r'bad.lst:2'):
        read_list(str(tmp_path), 'bad.lst')
    (tmp_path / 'mixed.lst').write_text('a.png\tb.png\nc.png\n')
    with pytest.raises(ValueError, match='mixes'):
        read_list(str(tmp_path), 'mixed.lst')


SHIPPED = os.path.join(os.path.dirname(__file__), '..', '..', 'data', 'list', 'cityscapes')
SHIPPED_LINES = {'train': 2975, 'val': 500, 'trainval': 3475, 'test': 1525}


def shipped_bytes(name):
    with open(os.path.join(SHIPPED, name + '.lst'), 'rb') as handle:
        return handle.read()


def test_shipped_lists_are_the_cityscapes_splits():
    splits = {'train': {'train'}, 'val': {'val'}, 'trainval': {'train', 'val'}, 'test': {'test'}}
    entries = {}
    for name, count in SHIPPED_LINES.items():
        text = shipped_bytes(name).decode('ascii')
        assert text.endswith('\n') and '\r' not in text, name
        entries[name] = text.splitlines()
        assert len(entries[name]) == count, name
        assert entries[name] == sorted(entries[name]), name
        fields = [line.split('\t') for line in entries[name]]
        assert {f[0].split('/')[1] for f in fields} == splits[name], name
        if name == 'test':
            assert all(len(f) == 1 for f in fields)
        else:
            assert all(len(f) == 2 and f[1] == label_path_for(f[0]) for f in fields), name
    assert entries['trainval'] == entries['train'] + entries['val']


def test_make_lists_writes_the_shipped_lists_from_a_complete_cityscapes(tmp_path):
    base = tmp_path / 'cityscapes'
    for name in ('train', 'val', 'test'):
        for line in shipped_bytes(name).decode('ascii').splitlines():
            image = line.split('\t')[0]
            # As in the downloaded archives: test labels exist (but are not listed), and
            # every label comes with colour, instance and polygon files.
            label = label_path_for(image)
            stem = label[:-len('_labelIds.png')]
            for path in (image, label, stem + '_color.png', stem + '_instanceIds.png',
                         stem + '_polygons.json'):
                (base / path).parent.mkdir(parents=True, exist_ok=True)
                (base / path).touch()
    counts = make_cityscapes_lists(str(tmp_path))
    assert counts == SHIPPED_LINES
    for name in SHIPPED_LINES:
        written = (tmp_path / 'list' / 'cityscapes' / (name + '.lst')).read_bytes()
        assert written == shipped_bytes(name), name
