"""The run-directory guard: no training replaces or mixes with another run, and
evaluations with overrides get a subdirectory of their own."""
import argparse
import os

import pytest

from config import config, update_config
from utils.errors import RunDirectoryError
from utils.run_dir import check_training_directory, evaluation_directory, hold_run_lock, \
    protected_entries

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, 'experiments', 'synthetic', 'tiny_adpc.yaml')


def cfg_of(*opts):
    return update_config(config.clone(), argparse.Namespace(cfg=TINY, opts=list(opts)))


def make_run(folder, cfg, finished=True, files=('checkpoint.pth.tar',)):
    """A run directory as training leaves it (the files the guard reads): by default
    one that has saved a checkpoint."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'config.yaml'), 'w') as f:
        f.write(cfg.dump())
    for name in files + (('final_state.pth',) if finished else ()):
        open(os.path.join(folder, name), 'wb').close()
    return folder


# What a start writes before its first checkpoint: its log (one per start), the
# TensorBoard events and the temporary file of an atomic write that a kill interrupted.
START_LEFTOVERS = ('tiny_adpc_2030-01-01-00-00-00_17_train.log', 'events.out.tfevents.1.host',
                   '.checkpoint.pth.tar.0a1b2c3d.tmp')


def test_an_empty_directory_is_a_new_run(tmp_path):
    check_training_directory(cfg_of(), str(tmp_path / 'new'))
    assert not (tmp_path / 'new').exists()


def test_another_configuration_is_refused_naming_each_difference(tmp_path):
    old = cfg_of('MASK.CONF_THRE', '0.6', 'EXIT.TYPE', 'flex')
    run = make_run(str(tmp_path / 'run'), old)
    with pytest.raises(RunDirectoryError) as info:
        check_training_directory(cfg_of('MASK.CONF_THRE', '0.9', 'EXIT.TYPE', 'original',
                                        'AUTO_RESUME', 'True'), run)
    message = str(info.value)
    assert 'MASK.CONF_THRE: 0.6 -> 0.9' in message
    assert "EXIT.TYPE: 'flex' -> 'original'" in message
    assert 'w48_rh.yaml' in message and 'OUTPUT_DIR' in message
    assert 'AUTO_RESUME' not in message  # a key that does not change the run


def test_keys_that_do_not_change_the_run_are_ignored(tmp_path):
    run = make_run(str(tmp_path / 'run'), cfg_of(), finished=False)
    check_training_directory(cfg_of('AUTO_RESUME', 'True', 'PRINT_FREQ', '1', 'WORKERS', '0',
                                    'PIN_MEMORY', 'False', 'TEST.BATCH_SIZE_PER_GPU', '1'), run)


def test_same_finished_configuration_without_auto_resume_is_refused(tmp_path):
    run = make_run(str(tmp_path / 'run'), cfg_of())
    with pytest.raises(RunDirectoryError, match=r'finished run of this same configuration'):
        check_training_directory(cfg_of(), run)


def test_same_unfinished_configuration_asks_for_auto_resume(tmp_path):
    run = make_run(str(tmp_path / 'run'), cfg_of(), finished=False)
    with pytest.raises(RunDirectoryError, match=r'(?s)unfinished run.*AUTO_RESUME True'):
        check_training_directory(cfg_of(), run)


@pytest.mark.parametrize('auto_resume', ['False', 'True'])
def test_a_start_that_failed_before_its_first_checkpoint_is_taken_over(tmp_path, auto_resume):
    run = make_run(str(tmp_path / 'run'), cfg_of('MODEL.PRETRAINED', 'nothing.pth'),
                   finished=False, files=START_LEFTOVERS)
    assert protected_entries(run) == []
    line = check_training_directory(cfg_of('AUTO_RESUME', auto_resume), run)
    assert line.startswith(f'taking over {run}: it held no checkpoint and no results')
    assert "keys changed since: MODEL.PRETRAINED 'nothing.pth' -> ''" in line
    assert f'log files kept: {START_LEFTOVERS[0]}' in line
    assert '\n' not in line  # one log line
    assert sorted(os.listdir(run)) == sorted(('config.yaml',) + START_LEFTOVERS)  # untouched
    assert 'keys changed since: none' in check_training_directory(cfg_of('MODEL.PRETRAINED',
                                                                         'nothing.pth'), run)


@pytest.mark.parametrize('work', [
    'checkpoint.pth.tar', 'best.pth', 'final_state.pth',  # training
    'result.txt', 'test_stats.json',  # its evaluation
    'eval/', 'sweep/', 'panels/',  # evaluations, sweeps, pictures of other settings
    'notes.txt', 'old.log/'])  # anything else is the user's: a folder even if named .log
def test_a_run_with_anything_beyond_a_start_s_files_stays_protected(tmp_path, work):
    run = make_run(str(tmp_path / 'run'), cfg_of('MODEL.PRETRAINED', 'nothing.pth'),
                   finished=False, files=START_LEFTOVERS)
    if work.endswith('/'):
        os.makedirs(os.path.join(run, work))
    else:
        open(os.path.join(run, work), 'wb').close()
    assert protected_entries(run) == [work.rstrip('/')]
    with pytest.raises(RunDirectoryError, match=r"holds (another|a finished) run"):
        check_training_directory(cfg_of(), run)


def test_a_run_that_a_process_is_training_is_refused_even_with_nothing_to_protect(tmp_path):
    run = make_run(str(tmp_path / 'run'), cfg_of(), finished=False, files=())
    lock = hold_run_lock(run)
    try:
        with pytest.raises(RunDirectoryError, match=r'a process is training now'):
            check_training_directory(cfg_of('AUTO_RESUME', 'True'), run)
    finally:
        lock.close()
    assert check_training_directory(cfg_of(), run).startswith('taking over')


def test_auto_resume_continues_and_may_add_an_extra_phase(tmp_path):
    run = make_run(str(tmp_path / 'run'), cfg_of())
    check_training_directory(cfg_of('AUTO_RESUME', 'True'), run)
    check_training_directory(cfg_of('AUTO_RESUME', 'True', 'TRAIN.EXTRA_EPOCH', '2',
                                    'DATASET.EXTRA_TRAIN_SET', 'list/cityscapes/val.lst'), run)


def test_unreadable_run_config_is_refused(tmp_path):
    run = str(tmp_path / 'run')
    os.makedirs(run)
    (tmp_path / 'run' / 'config.yaml').write_text('NOT_A_KEY: 1\n')
    with pytest.raises(RunDirectoryError, match=r'(?s)cannot be read.*NOT_A_KEY'):
        check_training_directory(cfg_of(), run)


def test_evaluation_of_the_run_itself_writes_into_the_run(tmp_path):
    run = make_run(str(tmp_path / 'run'), cfg_of('TRAIN.END_EPOCH', '2'))
    final = os.path.join(run, 'final_state.pth')
    assert evaluation_directory(cfg_of('TRAIN.END_EPOCH', '2'), run, final) == run
    # keys that only shape training do not make another evaluation
    assert evaluation_directory(cfg_of('TRAIN.LR', '0.5'), run, final) == run


def test_evaluation_with_overrides_gets_a_subdirectory_named_after_them(tmp_path):
    run = make_run(str(tmp_path / 'run'), cfg_of('MASK.CONF_THRE', '0.6', 'MASK.CRIT', 'conf_thre'))
    final = os.path.join(run, 'final_state.pth')
    assert evaluation_directory(cfg_of('MASK.CONF_THRE', '1'), run, final) == \
        os.path.join(run, 'eval', 'MASK.CONF_THRE=1.0')
    both = evaluation_directory(cfg_of('MASK.CONF_THRE', '1', 'MASK.CRIT', 'entropy_thre'),
                                run, final)
    assert os.path.basename(both) == 'MASK.CONF_THRE=1.0,MASK.CRIT=entropy_thre'
    other = evaluation_directory(cfg_of('MASK.CONF_THRE', '0.6'), run,
                                 '/weights/of another/run.pth')
    assert os.path.basename(other) == 'TEST.MODEL_FILE=_weights_of_another_run.pth'


def test_long_subdirectory_names_are_shortened_with_a_digest(tmp_path):
    run = make_run(str(tmp_path / 'run'), cfg_of())
    a = evaluation_directory(cfg_of(), run, '/x/' + 'a' * 200 + '.pth')
    b = evaluation_directory(cfg_of(), run, '/x/' + 'a' * 199 + 'b.pth')
    assert len(os.path.basename(a)) <= 100 and a != b


def test_evaluation_into_a_folder_without_a_run_writes_there(tmp_path):
    assert evaluation_directory(cfg_of(), str(tmp_path), 'model.pth') == str(tmp_path)
